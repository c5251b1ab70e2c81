//! Unit tests of ingest: reading each format, validating against the contract
//! (types, allowed values, keys, bounds, the date window), quarantine and warnings
//! files, the quarantine bound, and snapshot reuse by fingerprint.

use super::values::{blank, parse_date, parse_ts};
use super::*;
use crate::store::LocalDir;
use chrono::{NaiveDate, TimeZone};
use opnet_pipelines::contract::{ALL, Check, ColType};
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

const INVOICES_CSV: &str = "\
invoice_id,customer_id,currency,issued_on,status,paid_on,total_cents,extra
inv-1,cu-1,USD,2025-08-01,paid,2025-08-03,1000,x
inv-2,cu-2,US$,2025-08-01,paid,,500,x
inv-3,cu-3,EUR,2025-13-01,pending,,abc,x
inv-4,,EUR,2025-08-02,open,,-7,x
inv-5,cu-5,GBP,2025-08-02,void,,0,x
";

fn write(dir: &Path, rel: &str, text: &[u8]) -> anyhow::Result<()> {
    let p = dir.join(rel);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(p, text)?;
    Ok(())
}

/// The date window of an ingest on 2025-09-01 with the default settings.
fn rules() -> Rules {
    Rules::new(
        &IngestConfig::default(),
        NaiveDate::from_ymd_opt(2025, 9, 1).unwrap_or_default(),
    )
}

fn csv(text: &str) -> anyhow::Result<Raw> {
    Ok(read_raw(
        &contract::INVOICES,
        Format::Csv,
        text.as_bytes(),
        "f.csv",
    )?)
}

/// A full, valid source folder (one row per dataset, every column filled).
fn sample_rows() -> Vec<(&'static Dataset, Vec<(&'static str, &'static str)>)> {
    let v = |d: &'static Dataset, vals: &[&'static str]| {
        (
            d,
            d.columns
                .iter()
                .map(|c| c.name)
                .zip(vals.iter().copied())
                .collect::<Vec<_>>(),
        )
    };
    vec![
        v(
            &contract::INVOICES,
            &[
                "inv-1",
                "cu-1",
                "USD",
                "2025-08-01",
                "paid",
                "2025-08-03",
                "1000",
            ],
        ),
        v(
            &contract::INVOICE_LINES,
            &["inv-1", "1", "software", "1000", "2025-08-01", "2025-08-31"],
        ),
        v(
            &contract::REFUNDS,
            &["rf-1", "inv-1", "1", "2025-08-10", "100"],
        ),
        v(
            &contract::OPERATORS,
            &[
                "op-1",
                "Ann",
                "a@x.io",
                "Austin",
                "dental;legal",
                "2024-01-01",
                "",
            ],
        ),
        v(
            &contract::TERRITORIES,
            &["t-1", "Austin", "USD", "op-1", "2024-06-01"],
        ),
        v(
            &contract::CUSTOMERS,
            &[
                "cu-1",
                "op-1",
                "Acme",
                "dental",
                "Austin",
                "2025-01-01",
                "2025-02-01",
                "",
            ],
        ),
        v(
            &contract::LEADS,
            &[
                "ld-1",
                "web",
                "dental",
                "Austin",
                "2025-08-01T10:00:00Z",
                "op-1",
                "2025-08-01T12:30:00.250+00:00",
                "",
            ],
        ),
        v(&contract::TRAINING, &["op-1", "m-1", "true", "2025-01-05"]),
        v(
            &contract::SURVEY_RESPONSES,
            &["sr-1", "cu-1", "op-1", "2025-08-20", "9", ""],
        ),
    ]
}

fn sample_csv(dir: &Path) -> anyhow::Result<()> {
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

fn sample_jsonl(dir: &Path) -> anyhow::Result<()> {
    for (d, row) in sample_rows() {
        let fields: Vec<String> = row
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| match d.column(k).map(|c| c.ty) {
                // Numbers and bools as JSON numbers/bools, the rest as strings.
                Some(ColType::Int | ColType::Bool) => format!("\"{k}\":{v}"),
                _ => format!("\"{k}\":\"{v}\""),
            })
            .collect();
        write(
            dir,
            &format!("{}.jsonl", d.path()),
            format!("{{{}}}\n", fields.join(",")).as_bytes(),
        )?;
    }
    Ok(())
}

/// Parquet with the contract's own types (from the CSV sample).
fn sample_parquet(dir: &Path) -> anyhow::Result<()> {
    for (d, row) in sample_rows() {
        let header: Vec<&str> = row.iter().map(|(k, _)| *k).collect();
        let vals: Vec<&str> = row.iter().map(|(_, v)| *v).collect();
        let text = format!("{}\n{}\n", header.join(","), vals.join(","));
        let raw = read_raw(d, Format::Csv, text.as_bytes(), "x")?;
        let v = validate(d, raw, "x", &rules())?;
        let (mut typed, q) = (v.ok, v.quarantine);
        assert_eq!(q.height(), 0, "{q}");
        let mut buf = Vec::new();
        ParquetWriter::new(&mut buf).finish(&mut typed)?;
        write(dir, &format!("{}.parquet", d.path()), &buf)?;
    }
    Ok(())
}

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 9, 1, h, m, s)
        .single()
        .unwrap_or_default()
}

async fn collected(lake: &Lake, snapshot: &str) -> anyhow::Result<Vec<DataFrame>> {
    let inputs = lake.read_snapshot(snapshot).await?;
    Ok(vec![
        inputs.invoices.collect()?,
        inputs.invoice_lines.collect()?,
        inputs.refunds.collect()?,
        inputs.operators.collect()?,
        inputs.territories.collect()?,
        inputs.customers.collect()?,
        inputs.leads.collect()?,
        inputs.training.collect()?,
        inputs.survey_responses.collect()?,
    ])
}

fn quarantine_lines(q: &DataFrame) -> anyhow::Result<Vec<(i64, String, String)>> {
    let rows = q.column("row")?.i64()?.clone();
    let cols = q.column("column")?.str()?.clone();
    let reasons = q.column("reason")?.str()?.clone();
    Ok((0..q.height())
        .map(|i| {
            (
                rows.get(i).unwrap_or_default(),
                cols.get(i).unwrap_or_default().to_string(),
                reasons.get(i).unwrap_or_default().to_string(),
            )
        })
        .collect())
}

#[test]
fn quarantine_reasons_for_text_columns() -> anyhow::Result<()> {
    let v = validate(
        &contract::INVOICES,
        csv(INVOICES_CSV)?,
        "/src/billing/invoices.csv",
        &rules(),
    )?;
    let (ok, q) = (v.ok, v.quarantine);
    // inv-1 and inv-5 are good, typed as the contract says, extras dropped.
    assert_eq!(ok.height(), 2);
    assert_eq!(ok.width(), contract::INVOICES.columns.len());
    for c in contract::INVOICES.columns {
        assert_eq!(ok.column(c.name)?.dtype(), &c.ty.dtype(), "{}", c.name);
    }
    assert_eq!(ok.column("invoice_id")?.str()?.get(1), Some("inv-5"));
    assert_eq!(ok.column("total_cents")?.i64()?.get(0), Some(1000));
    assert_eq!(
        ok.column("paid_on")?.null_count(),
        1,
        "empty optional date is null"
    );
    assert_eq!(
        ok.column("issued_on")?.date()?.physical().get(0),
        Some(parse_date("2025-08-01").unwrap_or_default())
    );

    let lines = quarantine_lines(&q)?;
    let expect = [
        (2, "currency", "unknown ISO 4217 currency: \"US$\""),
        (3, "issued_on", "not a date: \"2025-13-01\""),
        (
            3,
            "status",
            "not one of open|paid|void|uncollectible: \"pending\"",
        ),
        (3, "total_cents", "not an integer: \"abc\""),
        (4, "customer_id", "missing value"),
    ];
    let got: Vec<(i64, &str, &str)> = lines
        .iter()
        .map(|(r, c, m)| (*r, c.as_str(), m.as_str()))
        .collect();
    assert_eq!(got, expect);
    assert!(
        q.column("file")?
            .str()?
            .iter()
            .all(|f| f == Some("/src/billing/invoices.csv"))
    );
    // Original values follow, as text.
    assert_eq!(q.column("issued_on")?.str()?.get(1), Some("2025-13-01"));
    assert_eq!(q.column("invoice_id")?.str()?.get(4), Some("inv-4"));
    let names: Vec<&str> = q.get_column_names().iter().map(|s| s.as_str()).collect();
    assert_eq!(
        &names[..5],
        ["file", "row", "column", "reason", "invoice_id"]
    );
    Ok(())
}

#[test]
fn quarantine_reasons_for_ts_bool_range() -> anyhow::Result<()> {
    let leads = "lead_id,source,vertical,metro,created_at,assigned_operator_id,first_contact_at,converted_customer_id\n\
        l1,web,dental,Austin,2025-08-01T10:00:00Z,,2025-08-01T11:00:00+00:00,\n\
        l2,web,dental,Austin,2025-08-01 10:00,,,\n\
        l3,web,dental,Austin,2025-08-01T10:00:00+02:00,,,\n";
    let raw = read_raw(&contract::LEADS, Format::Csv, leads.as_bytes(), "leads.csv")?;
    let v = validate(&contract::LEADS, raw, "leads.csv", &rules())?;
    let (ok, q) = (v.ok, v.quarantine);
    assert_eq!(ok.height(), 1);
    let ts = ok.column("created_at")?;
    assert_eq!(
        ts.dtype(),
        &DataType::Datetime(TimeUnit::Milliseconds, None)
    );
    assert_eq!(
        ts.datetime()?.physical().get(0),
        Utc.with_ymd_and_hms(2025, 8, 1, 10, 0, 0)
            .single()
            .map(|t| t.timestamp_millis())
    );
    assert_eq!(
        ok.column("first_contact_at")?.datetime()?.physical().get(0),
        Some(
            Utc.with_ymd_and_hms(2025, 8, 1, 11, 0, 0)
                .single()
                .map(|t| t.timestamp_millis())
                .unwrap_or_default()
        )
    );
    let lines = quarantine_lines(&q)?;
    assert_eq!(
        lines[0],
        (
            2,
            "created_at".into(),
            "not an RFC 3339 timestamp: \"2025-08-01 10:00\"".into()
        )
    );
    assert_eq!(
        lines[1],
        (
            3,
            "created_at".into(),
            "not in UTC (offset +02:00): \"2025-08-01T10:00:00+02:00\"".into()
        )
    );

    let training = "operator_id,module_id,required,completed_on\nop,m1,true,\nop,m2,yes,\nop,m3,false,2025-01-01\n";
    let raw = read_raw(
        &contract::TRAINING,
        Format::Csv,
        training.as_bytes(),
        "training.csv",
    )?;
    let v = validate(&contract::TRAINING, raw, "training.csv", &rules())?;
    let (ok, q) = (v.ok, v.quarantine);
    assert_eq!(
        ok.column("required")?.bool()?.iter().collect::<Vec<_>>(),
        [Some(true), Some(false)]
    );
    assert_eq!(
        quarantine_lines(&q)?,
        [(
            2,
            "required".into(),
            "not a bool (true|false): \"yes\"".into()
        )]
    );

    let survey = "response_id,customer_id,operator_id,submitted_on,nps_score,csat_score\n\
        r1,c,o,2025-08-01,10,\nr2,c,o,2025-08-01,11,7\nr3,c,o,2025-08-01,,0\n";
    let raw = read_raw(
        &contract::SURVEY_RESPONSES,
        Format::Csv,
        survey.as_bytes(),
        "s.csv",
    )?;
    let v = validate(&contract::SURVEY_RESPONSES, raw, "s.csv", &rules())?;
    let (ok, q) = (v.ok, v.quarantine);
    assert_eq!(ok.height(), 1);
    assert_eq!(
        ok.column("csat_score")?.null_count(),
        1,
        "optional int may be empty"
    );
    assert_eq!(
        quarantine_lines(&q)?,
        [
            (2, "nps_score".into(), "out of range 0..=10: 11".into()),
            (2, "csat_score".into(), "out of range 1..=5: 7".into()),
            (3, "csat_score".into(), "out of range 1..=5: 0".into()),
        ]
    );

    let refunds = "refund_id,invoice_id,line_no,refunded_on,amount_cents\nrf,inv,1,2025-08-01,-5\n";
    let raw = read_raw(&contract::REFUNDS, Format::Csv, refunds.as_bytes(), "r.csv")?;
    let v = validate(&contract::REFUNDS, raw, "r.csv", &rules())?;
    let (_, q) = (v.ok, v.quarantine);
    assert_eq!(
        quarantine_lines(&q)?,
        [(1, "amount_cents".into(), "out of range 0..: -5".into())]
    );
    Ok(())
}

#[test]
fn missing_column_names_file_and_column() -> anyhow::Result<()> {
    let text =
        "invoice_id,customer_id,currency,issued_on,status,paid_on\ninv-1,c,USD,2025-08-01,open,\n";
    let file = "/src/billing/invoices.csv";
    let err = read_raw(&contract::INVOICES, Format::Csv, text.as_bytes(), file)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(err, format!("missing column total_cents in {file}"));
    // The same from a frame (Parquet, SQL) without the column.
    let frame = df!("invoice_id" => ["inv-1"])?;
    let err = validate(&contract::INVOICES, frame, file, &rules())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        err,
        format!(
            "missing column customer_id, currency, issued_on, status, paid_on, total_cents in {file}"
        )
    );
    Ok(())
}

#[tokio::test]
async fn missing_file_and_column_fail_ingest() -> anyhow::Result<()> {
    let src = tempfile::tempdir()?;
    let lake_dir = tempfile::tempdir()?;
    let lake = Lake::new(Arc::new(LocalDir::new(lake_dir.path())));
    sample_csv(src.path())?;
    std::fs::remove_file(src.path().join("crm/leads.csv"))?;
    let err = ingest(&LocalDir::new(src.path()), &lake, at(2, 0, 0))
        .await
        .err();
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert_eq!(
        msg,
        format!(
            "missing source file crm/leads.csv (or .jsonl/.ndjson/.parquet) in {}",
            src.path().display()
        )
    );

    // A JSON Lines file without a key on any line misses that column.
    sample_csv(src.path())?;
    std::fs::remove_file(src.path().join("crm/training.csv"))?;
    write(
        src.path(),
        "crm/training.jsonl",
        b"{\"operator_id\":\"op\",\"module_id\":\"m\",\"completed_on\":null}\n",
    )?;
    let msg = ingest(&LocalDir::new(src.path()), &lake, at(2, 0, 0))
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        msg,
        format!(
            "missing column required in {}",
            src.path().join("crm/training.jsonl").display()
        )
    );
    assert_eq!(
        lake.latest_snapshot().await?,
        None,
        "a failed ingest publishes nothing"
    );

    // Two files for one dataset is ambiguous.
    write(
        src.path(),
        "crm/training.csv",
        b"operator_id,module_id,required,completed_on\n",
    )?;
    let err = ingest(&LocalDir::new(src.path()), &lake, at(2, 0, 0))
        .await
        .err();
    assert!(
        matches!(err, Some(IngestError::AmbiguousFile { .. })),
        "{err:?}"
    );
    Ok(())
}

// Multi-threaded: collecting a lazy Parquet scan blocks in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_jsonl_parquet_give_the_same_snapshot() -> anyhow::Result<()> {
    let lake_dir = tempfile::tempdir()?;
    let lake = Lake::new(Arc::new(LocalDir::new(lake_dir.path())));
    let mut snapshots = Vec::new();
    for (i, make) in [
        sample_csv as fn(&Path) -> anyhow::Result<()>,
        sample_jsonl,
        sample_parquet,
    ]
    .into_iter()
    .enumerate()
    {
        let src = tempfile::tempdir()?;
        make(src.path())?;
        let report = ingest(&LocalDir::new(src.path()), &lake, at(2, 0, i as u32)).await?;
        assert!(!report.reused);
        assert_eq!(report.rows_quarantined(), 0, "{report:?}");
        assert_eq!(report.rows_in(), ALL.len());
        snapshots.push(collected(&lake, &report.snapshot).await?);
    }
    for (d, ((a, b), c)) in ALL
        .iter()
        .zip(snapshots[0].iter().zip(&snapshots[1]).zip(&snapshots[2]))
    {
        assert!(a.equals_missing(b), "{}: csv vs jsonl\n{a}\n{b}", d.path());
        assert!(
            a.equals_missing(c),
            "{}: csv vs parquet\n{a}\n{c}",
            d.path()
        );
        assert_eq!(a.height(), 1);
    }
    Ok(())
}

// Multi-threaded: collecting a lazy Parquet scan blocks in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reingest_reuses_snapshot_and_change_makes_new_one() -> anyhow::Result<()> {
    let src = tempfile::tempdir()?;
    let lake_dir = tempfile::tempdir()?;
    let lake = Lake::new(Arc::new(LocalDir::new(lake_dir.path())));
    sample_csv(src.path())?;
    std::fs::write(src.path().join("billing/invoices.csv"), INVOICES_CSV)?;
    let source = LocalDir::new(src.path());
    // 3 of 5 invoices are bad on purpose: a bound that lets them through.
    let loose = IngestConfig {
        max_quarantine_share: 1.0,
        ..IngestConfig::default()
    };
    let ingest = async |source: &LocalDir, lake: &Lake, now| {
        ingest_with_sources(source, lake, now, &BTreeMap::new(), &loose).await
    };

    let first = ingest(&source, &lake, at(2, 0, 0)).await?;
    assert_eq!(first.snapshot, "2025-09-01T020000Z");
    assert!(!first.reused);
    assert_eq!(first.rows_quarantined(), 3);
    let inv = &first.datasets[0];
    assert_eq!((inv.rows_in, inv.rows_ok, inv.rows_quarantined), (5, 2, 3));
    let qloc = lake_dir
        .path()
        .join("quarantine/billing/invoices/ingested=2025-09-01T020000Z/part-0.csv");
    assert_eq!(
        inv.quarantine.as_deref(),
        Some(qloc.display().to_string().as_str())
    );
    let qtext = std::fs::read_to_string(&qloc)?;
    assert!(
        qtext.starts_with("file,row,column,reason,invoice_id,"),
        "{qtext}"
    );
    assert!(
        qtext.contains(",2,currency,\"unknown ISO 4217 currency: \"\"US$\"\"\",inv-2,"),
        "{qtext}"
    );
    assert!(
        lake_dir
            .path()
            .join("raw/_snapshots/2025-09-01T020000Z.toml")
            .is_file()
    );

    let again = ingest(&source, &lake, at(3, 0, 0)).await?;
    assert!(again.reused);
    // Issue 9 item 10: the bound holds on reuse too (checked on the recorded counts).
    let strict_config = IngestConfig {
        quarantine_allowance_rows: 0,
        ..IngestConfig::default()
    };
    let strict = ingest_with_sources(
        &source,
        &lake,
        at(3, 0, 0),
        &BTreeMap::new(),
        &strict_config,
    )
    .await
    .err();
    assert!(
        matches!(&strict, Some(IngestError::TooManyQuarantined { breaches, .. })
            if breaches[0].dataset == "billing/invoices" && breaches[0].rows_quarantined == 3),
        "{strict:?}"
    );
    assert_eq!(again.snapshot, first.snapshot);
    assert_eq!(again.fingerprint, first.fingerprint);
    assert_eq!(again.datasets, first.datasets);

    // One changed byte: a new snapshot; same second as the first: suffixed.
    std::fs::write(
        src.path().join("billing/invoices.csv"),
        INVOICES_CSV.replace("1000", "1001"),
    )?;
    let changed = ingest(&source, &lake, at(2, 0, 0)).await?;
    assert!(!changed.reused);
    assert_ne!(changed.fingerprint, first.fingerprint);
    assert_eq!(changed.snapshot, "2025-09-01T020000Z-2");
    assert_eq!(
        lake.latest_snapshot().await?.as_deref(),
        Some("2025-09-01T020000Z-2")
    );
    let inv = lake
        .read_snapshot(&changed.snapshot)
        .await?
        .invoices
        .collect()?;
    assert_eq!(inv.column("total_cents")?.i64()?.get(0), Some(1001));
    Ok(())
}

#[test]
fn parsers() {
    assert_eq!(parse_date("1970-01-01"), Some(0));
    assert_eq!(parse_date("1970-01-02"), Some(1));
    assert_eq!(parse_date("1969-12-31"), Some(-1));
    assert_eq!(parse_date("2024-02-29"), Some(19782));
    for bad in [
        "2025-02-29",
        "2025-1-01",
        "2025/01/01",
        "2025-01-01T00:00:00Z",
        "+025-01-01",
        "",
    ] {
        assert_eq!(parse_date(bad), None, "{bad}");
    }
    assert_eq!(parse_ts("1970-01-01T00:00:01.5Z"), Ok(1500));
    assert_eq!(parse_ts("1970-01-01T00:00:01+00:00"), Ok(1000));
    assert!(parse_ts("1970-01-01").is_err());
}

fn read(d: &Dataset, text: &[u8]) -> anyhow::Result<Raw> {
    Ok(read_raw(d, Format::Csv, text, "f.csv")?)
}

fn column_strs(df: &DataFrame, name: &str) -> anyhow::Result<Vec<Option<String>>> {
    let s = df.column(name)?.cast(&DataType::String)?;
    Ok(s.str()?.iter().map(|v| v.map(str::to_string)).collect())
}

const OPERATORS_HEADER: &str = "operator_id,name,email,metro,verticals,joined_on,terminated_on\n";

/// Issue 9 item 1: a key repeated with identical rows collapses to the first (a
/// warning per repeat); repeated with different rows, every copy is quarantined
/// naming the others, whatever the order. Unkeyed billing rows pass untouched (R7).
#[test]
fn duplicate_keys_collapse_identical_and_quarantine_conflicting() -> anyhow::Result<()> {
    let text = format!(
        "{OPERATORS_HEADER}\
         op-1,Ann,ann@x.io,Austin,dental,2024-01-01,\n\
         op-2,Bo,bo@x.io,Austin,dental,2024-01-01,\n\
         op-1,Ann,ann@x.io,Austin,dental,2024-01-01,\n\
         op-3,Cy,cy@x.io,Austin,dental,2024-01-01,\n\
         op-3,Cy,bo@x.io,Austin,dental,2024-01-01,\n\
         op-3,Cy,cy@x.io,Austin,dental,2024-01-01,\n\
         op-4,Di,di@x.io,Austin,dental,2024-01-01,\n\
         op-4,Di,di@x.io,Austin,dental,2024-13-01,\n\
         op-5,Ed,Ed <ed@x.io>,Austin,dental,2024-01-01,\n\
         op-5,Ed,Ed <ed@x.io>,Austin,dental,2024-01-01,\n"
    );
    let v = validate(
        &contract::OPERATORS,
        read(&contract::OPERATORS, text.as_bytes())?,
        "f.csv",
        &rules(),
    )?;
    assert_eq!(
        column_strs(&v.ok, "operator_id")?,
        [
            Some("op-1".to_string()),
            Some("op-2".to_string()),
            Some("op-5".to_string())
        ]
    );
    assert_eq!((v.rows_quarantined, v.rows_collapsed), (5, 2));
    assert_eq!(
        quarantine_lines(&v.quarantine)?,
        [
            (4, "operator_id".into(), "duplicate key operator_id \"op-3\": also in row 5, 6 with different email; every copy is quarantined".into()),
            (5, "operator_id".into(), "duplicate key operator_id \"op-3\": also in row 4, 6 with different email; every copy is quarantined".into()),
            (6, "operator_id".into(), "duplicate key operator_id \"op-3\": also in row 4, 5 with different email; every copy is quarantined".into()),
            // A broken copy does not make the other one the winner.
            (7, "operator_id".into(), "duplicate key operator_id \"op-4\": also in row 8 with different joined_on; every copy is quarantined".into()),
            (8, "operator_id".into(), "duplicate key operator_id \"op-4\": also in row 7 with different joined_on; every copy is quarantined".into()),
            (8, "joined_on".into(), "not a date: \"2024-13-01\"".into()),
        ]
    );
    // The email warning is the kept row's only, not repeated for its collapsed copy.
    let display = "a display-name form (Name <address>), not a bare address: \"Ed <ed@x.io>\"; \
                   the row is kept (its money is computed) but no mail can go to it";
    let collapsed = |id: &str, kept: usize| {
        format!(
            "duplicate key operator_id \"{id}\": an identical copy of row {kept}, collapsed into it"
        )
    };
    assert_eq!(
        quarantine_lines(&v.warnings)?,
        [
            (3, "operator_id".into(), collapsed("op-1", 1)),
            (9, "email".into(), display.into()),
            (10, "operator_id".into(), collapsed("op-5", 9)),
        ]
    );
    // The original values follow in both files.
    assert_eq!(
        column_strs(&v.warnings, "email")?[0],
        Some("ann@x.io".to_string())
    );
    assert_eq!(
        column_strs(&v.quarantine, "email")?[..3],
        [
            Some("cy@x.io".to_string()),
            Some("bo@x.io".to_string()),
            Some("cy@x.io".to_string())
        ]
    );

    // A composite key (crm/training: operator_id, module_id).
    let text = "operator_id,module_id,required,completed_on\n\
        op-1,m-1,true,2025-01-01\nop-1,m-2,true,\nop-2,m-1,true,\nop-1,m-1,true,\n";
    let v = validate(
        &contract::TRAINING,
        read(&contract::TRAINING, text.as_bytes())?,
        "f.csv",
        &rules(),
    )?;
    assert_eq!(v.ok.height(), 2);
    assert_eq!(
        quarantine_lines(&v.quarantine)?,
        [
            (1, "operator_id,module_id".into(), "duplicate key operator_id \"op-1\", module_id \"m-1\": also in row 4 with different completed_on; every copy is quarantined".into()),
            (4, "operator_id,module_id".into(), "duplicate key operator_id \"op-1\", module_id \"m-1\": also in row 1 with different completed_on; every copy is quarantined".into()),
        ]
    );

    // R7 owns repeated invoices and lines: they reach the pipelines as they are.
    let text = "invoice_id,customer_id,currency,issued_on,status,paid_on,total_cents\n\
        inv-1,cu-1,USD,2025-08-01,paid,2025-08-03,1000\ninv-1,cu-1,USD,2025-08-01,paid,2025-08-03,1000\n\
        inv-1,cu-2,USD,2025-08-01,paid,2025-08-03,900\n";
    let v = validate(&contract::INVOICES, csv(text)?, "f.csv", &rules())?;
    assert_eq!(
        (v.ok.height(), v.rows_quarantined, v.rows_collapsed),
        (3, 0, 0)
    );
    assert_eq!(v.warnings.height(), 0);
    Ok(())
}

/// Every keyed dataset enforces its key (refunds, territories, customers, leads,
/// survey responses too), in Parquet as in CSV.
#[test]
fn every_keyed_dataset_refuses_conflicting_copies() -> anyhow::Result<()> {
    for (d, row) in sample_rows() {
        if d.key.is_empty() {
            continue;
        }
        let header: Vec<&str> = row.iter().map(|(k, _)| *k).collect();
        let vals: Vec<&str> = row.iter().map(|(_, v)| *v).collect();
        // The same key twice, the second copy differing in a non-key column.
        let other = d
            .columns
            .iter()
            .position(|c| {
                !d.key.contains(&c.name) && c.ty == ColType::Str && c.check == Check::None
            })
            .or_else(|| {
                d.columns
                    .iter()
                    .position(|c| c.ty == ColType::Date && c.nullable)
            })
            .unwrap_or(0);
        let mut changed = vals.clone();
        changed[other] = if d.columns[other].ty == ColType::Date {
            "2025-01-02"
        } else {
            "changed"
        };
        let text = format!(
            "{}\n{}\n{}\n{}\n",
            header.join(","),
            vals.join(","),
            vals.join(","),
            changed.join(",")
        );
        let v = validate(d, read(d, text.as_bytes())?, "f.csv", &rules())?;
        assert_eq!(v.ok.height(), 0, "{}", d.path());
        assert_eq!(v.rows_quarantined, 3, "{}: {}", d.path(), v.quarantine);
        // Parquet, typed: the same judgement.
        let typed = validate(
            d,
            read(
                d,
                format!("{}\n{}\n", header.join(","), vals.join(",")).as_bytes(),
            )?,
            "x",
            &rules(),
        )?
        .ok;
        let mut twice = typed.vstack(&typed)?;
        let mut buf = Vec::new();
        ParquetWriter::new(&mut buf).finish(&mut twice)?;
        let raw = read_raw(d, Format::Parquet, &buf, "f.parquet")?;
        let v = validate(d, raw, "f.parquet", &rules())?;
        assert_eq!((v.ok.height(), v.rows_collapsed), (1, 1), "{}", d.path());
        assert!(v.ok.equals_missing(&typed), "{}", d.path());
    }
    Ok(())
}

/// Issue 9 item 8 (R0.2): money beyond contract::MAX_ABS_CENTS is quarantined, in
/// text and in typed (Parquet) sources; the bound itself is accepted.
#[test]
fn money_beyond_the_sanity_bound_is_quarantined() -> anyhow::Result<()> {
    let text = "invoice_id,line_no,revenue_type,amount_cents,service_start,service_end\n\
        inv-1,1,software,100000000000000,2025-08-01,2025-08-31\n\
        inv-1,2,software,-100000000000000,2025-08-01,2025-08-31\n\
        inv-1,3,software,100000000000001,2025-08-01,2025-08-31\n\
        inv-1,4,software,2000000000000000000,2025-08-01,2025-08-31\n\
        inv-1,5,software,-9223372036854775808,2025-08-01,2025-08-31\n";
    let d = &contract::INVOICE_LINES;
    let v = validate(d, read(d, text.as_bytes())?, "f.csv", &rules())?;
    assert_eq!(v.ok.height(), 2);
    let why = |n: &str| {
        format!(
            "beyond the sanity bound of 100000000000000 cents in magnitude (contract::MAX_ABS_CENTS): {n}"
        )
    };
    assert_eq!(
        quarantine_lines(&v.quarantine)?,
        [
            (3, "amount_cents".into(), why("100000000000001")),
            (4, "amount_cents".into(), why("2000000000000000000")),
            (5, "amount_cents".into(), why("-9223372036854775808")),
        ]
    );
    // Typed: invoices' total_cents and refunds' amount_cents, from Parquet.
    let mut inv = df!(
        "invoice_id" => ["a", "b"], "customer_id" => ["c", "c"], "currency" => ["USD", "USD"],
        "issued_on" => ["2025-08-01", "2025-08-01"], "status" => ["paid", "paid"],
        "paid_on" => ["2025-08-02", "2025-08-02"], "total_cents" => [5i64, -2_000_000_000_000_000_000],
    )?;
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf).finish(&mut inv)?;
    let v = validate(
        &contract::INVOICES,
        read_raw(&contract::INVOICES, Format::Parquet, &buf, "f.parquet")?,
        "f.parquet",
        &rules(),
    )?;
    assert_eq!(v.ok.height(), 1);
    assert_eq!(
        quarantine_lines(&v.quarantine)?,
        [(2, "total_cents".into(), why("-2000000000000000000"))]
    );
    let refunds = "refund_id,invoice_id,line_no,refunded_on,amount_cents\n\
        rf-1,inv,1,2025-08-01,-5\nrf-2,inv,1,2025-08-01,1000000000000000\n";
    let d = &contract::REFUNDS;
    let v = validate(d, read(d, refunds.as_bytes())?, "f.csv", &rules())?;
    assert_eq!(
        quarantine_lines(&v.quarantine)?,
        [
            (1, "amount_cents".into(), "out of range 0..: -5".into()),
            (2, "amount_cents".into(), why("1000000000000000")),
        ]
    );
    Ok(())
}

/// Issue 9 item 9: every date and timestamp column refuses values outside
/// `ingest.earliest_date ..= ingest day + ingest.max_months_ahead` (year 0000 too),
/// in text and typed sources; the bounds are settings.
#[test]
fn dates_outside_the_window_are_quarantined() -> anyhow::Result<()> {
    // Ingest day 2025-09-01: the window is 1990-01-01 ..= 2026-09-01.
    let window = "outside the accepted date window 1990-01-01..=2026-09-01 (ingest.earliest_date, ingest.max_months_ahead)";
    let text = "invoice_id,customer_id,currency,issued_on,status,paid_on,total_cents\n\
        inv-1,cu,USD,0000-01-15,open,,1\n\
        inv-2,cu,USD,1989-12-31,open,,1\n\
        inv-3,cu,USD,1990-01-01,paid,2026-09-01,1\n\
        inv-4,cu,USD,2025-08-01,paid,2026-09-02,1\n\
        inv-5,cu,USD,9999-12-31,open,,1\n";
    let v = validate(&contract::INVOICES, csv(text)?, "f.csv", &rules())?;
    assert_eq!(
        column_strs(&v.ok, "invoice_id")?,
        [Some("inv-3".to_string())]
    );
    assert_eq!(
        quarantine_lines(&v.quarantine)?,
        [
            (1, "issued_on".into(), format!("{window}: \"0000-01-15\"")),
            (2, "issued_on".into(), format!("{window}: \"1989-12-31\"")),
            (4, "paid_on".into(), format!("{window}: \"2026-09-02\"")),
            (5, "issued_on".into(), format!("{window}: \"9999-12-31\"")),
        ]
    );
    // Timestamps: their UTC date counts.
    let leads = "lead_id,source,vertical,metro,created_at,assigned_operator_id,first_contact_at,converted_customer_id\n\
        l1,web,dental,Austin,1989-12-31T23:59:59Z,,,\n\
        l2,web,dental,Austin,1990-01-01T00:00:00Z,,2026-09-02T00:00:00Z,\n\
        l3,web,dental,Austin,1990-01-01T00:00:00Z,,2026-09-01T23:59:59.999Z,\n";
    let d = &contract::LEADS;
    let v = validate(d, read(d, leads.as_bytes())?, "f.csv", &rules())?;
    assert_eq!(column_strs(&v.ok, "lead_id")?, [Some("l3".to_string())]);
    assert_eq!(
        quarantine_lines(&v.quarantine)?,
        [
            (
                1,
                "created_at".into(),
                format!("{window}: \"1989-12-31T23:59:59Z\"")
            ),
            (
                2,
                "first_contact_at".into(),
                format!("{window}: \"2026-09-02T00:00:00Z\"")
            ),
        ]
    );
    // Typed Parquet dates and timestamps.
    let days = |s: &str| parse_date(s).unwrap_or_default();
    let mut ops = df!(
        "operator_id" => ["a", "b"], "name" => ["A", "B"], "email" => ["a@x.io", "b@x.io"],
        "metro" => ["M", "M"], "verticals" => ["v", "v"],
        "joined_on" => [days("2020-01-01"), days("0000-01-01")],
        "terminated_on" => [None::<i32>, None],
    )?;
    for c in ["joined_on", "terminated_on"] {
        let s = ops.column(c)?.cast(&DataType::Date)?;
        ops.with_column(s)?;
    }
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf).finish(&mut ops)?;
    let d = &contract::OPERATORS;
    let v = validate(
        d,
        read_raw(d, Format::Parquet, &buf, "f.parquet")?,
        "f.parquet",
        &rules(),
    )?;
    assert_eq!(
        quarantine_lines(&v.quarantine)?,
        [(2, "joined_on".into(), format!("{window}: 0000-01-01"))]
    );
    // The settings move the window.
    let narrow = Rules::new(
        &IngestConfig {
            earliest_date: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default(),
            max_months_ahead: 0,
            ..IngestConfig::default()
        },
        NaiveDate::from_ymd_opt(2025, 9, 1).unwrap_or_default(),
    );
    let v = validate(&contract::INVOICES, csv(text)?, "f.csv", &narrow)?;
    assert_eq!(v.ok.height(), 0);
    assert!(
        quarantine_lines(&v.quarantine)?
            .iter()
            .any(|(r, c, m)| *r == 3 && c == "issued_on" && m.contains("2025-01-01..=2025-09-01")),
        "{}",
        v.quarantine
    );
    Ok(())
}

/// Issue 9 item 5: an operator email that is not one bare address is a warning,
/// never a quarantine: the operator (and its money) stays in the snapshot.
#[test]
fn bad_operator_email_is_reported_and_the_row_kept() -> anyhow::Result<()> {
    let text = format!(
        "{OPERATORS_HEADER}\
         op-1,Ann,ann@x.io,Austin,dental,2024-01-01,\n\
         op-2,Bo,\"bo@x.io, eve@evil.io\",Austin,dental,2024-01-01,\n\
         op-3,Cy,Cy <cy@x.io>,Austin,dental,2024-01-01,\n\
         op-4,Di,\"di@x.io\r\nBcc: eve@evil.io\",Austin,dental,2024-01-01,\n\
         op-5,Ed,ed at x.io,Austin,dental,2024-01-01,\n\
         op-6,Fi,fi@,Austin,dental,2024-01-01,\n\
         op-7,Gu,gu@x.io;eve@evil.io,Austin,dental,2024-01-01,\n\
         op-8,Ha,,Austin,dental,2024-01-01,\n"
    );
    let d = &contract::OPERATORS;
    let v = validate(d, read(d, text.as_bytes())?, "f.csv", &rules())?;
    assert_eq!(v.ok.height(), 7, "only the missing address is a broken row");
    assert_eq!(
        quarantine_lines(&v.quarantine)?,
        [(8, "email".into(), "missing value".into())]
    );
    let kept = "; the row is kept (its money is computed) but no mail can go to it";
    assert_eq!(
        quarantine_lines(&v.warnings)?,
        [
            (
                2,
                "email".into(),
                format!("a list of addresses, not one: \"bo@x.io, eve@evil.io\"{kept}")
            ),
            (
                3,
                "email".into(),
                format!(
                    "a display-name form (Name <address>), not a bare address: \"Cy <cy@x.io>\"{kept}"
                )
            ),
            (
                4,
                "email".into(),
                format!(
                    "contains a line break or control character: \"di@x.io\\r\\nBcc: eve@evil.io\"{kept}"
                )
            ),
            (
                5,
                "email".into(),
                format!("contains whitespace: \"ed at x.io\"{kept}")
            ),
            (
                6,
                "email".into(),
                format!("not an email address: \"fi@\"{kept}")
            ),
            (
                7,
                "email".into(),
                format!("a list of addresses, not one: \"gu@x.io;eve@evil.io\"{kept}")
            ),
        ]
    );
    Ok(())
}

/// Issue 9 item 11: a CSV row with too few or too many fields, malformed quoting or
/// bytes that are not UTF-8 is quarantined with its row number; the rest of the
/// file is read. A repeated header name or a quote never closed fails the file.
#[test]
fn csv_rows_that_cannot_be_read_are_quarantined_with_their_row() -> anyhow::Result<()> {
    let d = &contract::CUSTOMERS;
    let header =
        "customer_id,operator_id,name,vertical,metro,contract_signed_on,go_live_on,churned_on\n";
    let mut text = header.as_bytes().to_vec();
    text.extend_from_slice(b"cu-1,op-1,Acme,dental,Austin,2025-01-01,2025-02-01,\n");
    // Short: the churn date (and its comma) is missing: not "active".
    text.extend_from_slice(b"cu-2,op-1,Beta,dental,Austin,2025-01-01,2025-02-01\n");
    // Long: one field too many.
    text.extend_from_slice(b"cu-3,op-1,Gamma,dental,Austin,2025-01-01,2025-02-01,,x\n");
    // Latin-1 in a name.
    text.extend_from_slice(b"cu-4,op-1,Caf\xe9,dental,Austin,2025-01-01,2025-02-01,\n");
    text.extend_from_slice(b"\n");
    // Quoted fields spanning lines, CRLF, doubled quotes: fine.
    text.extend_from_slice(
        b"cu-5,op-1,\"Delta, \"\"the\"\"\nfirm\",dental,Austin,2025-01-01,,\r\n",
    );
    // Text after a closing quote.
    text.extend_from_slice(b"cu-6,op-1,\"Eps\"ilon,dental,Austin,2025-01-01,,\n");
    // Non-UTF-8 in a column beyond the contract would not matter, but here it is
    // in the key: the row goes.
    text.extend_from_slice(b"cu-\xff,op-1,Zeta,dental,Austin,2025-01-01,,");
    let v = validate(d, read(d, &text)?, "f.csv", &rules())?;
    assert_eq!(
        column_strs(&v.ok, "customer_id")?,
        [Some("cu-1".to_string()), Some("cu-5".to_string())]
    );
    assert_eq!(
        column_strs(&v.ok, "name")?[1].as_deref(),
        Some("Delta, \"the\"\nfirm")
    );
    assert_eq!(
        quarantine_lines(&v.quarantine)?,
        [
            (
                2,
                "".into(),
                "7 fields where the header has 8 (line 3)".into()
            ),
            (
                3,
                "".into(),
                "9 fields where the header has 8 (line 4)".into()
            ),
            (
                4,
                "name".into(),
                "not valid UTF-8 (byte 0xE9 at byte 4 of the value)".into()
            ),
            (
                6,
                "name".into(),
                "text after the closing quote of a field (line 9)".into()
            ),
            (
                7,
                "customer_id".into(),
                "not valid UTF-8 (byte 0xFF at byte 4 of the value)".into()
            ),
        ]
    );
    assert_eq!(v.rows_quarantined, 5);
    // The original values are shown as far as they go.
    assert_eq!(
        column_strs(&v.quarantine, "name")?[2].as_deref(),
        Some("Caf\u{fffd}")
    );
    assert_eq!(column_strs(&v.quarantine, "churned_on")?[0], None);

    // A BOM and CRLF line ends read like plain LF.
    let crlf = format!("\u{feff}{}", header.replace('\n', "\r\n"))
        + "cu-1,op-1,Acme,dental,Austin,2025-01-01,,2025-06-30\r\n";
    let v = validate(d, read(d, crlf.as_bytes())?, "f.csv", &rules())?;
    assert_eq!(
        (v.ok.height(), v.rows_quarantined),
        (1, 0),
        "{}",
        v.quarantine
    );
    assert_eq!(
        column_strs(&v.ok, "churned_on")?,
        [Some("2025-06-30".to_string())]
    );

    let dup = "customer_id,operator_id,name,vertical,metro,contract_signed_on,go_live_on,churned_on,name\n";
    let err = read_raw(d, Format::Csv, dup.as_bytes(), "/src/crm/customers.csv")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        err,
        "column name appears more than once in the header of /src/crm/customers.csv; keep exactly one"
    );
    let open = format!(
        "{header}cu-1,op-1,\"Acme,dental,Austin,2025-01-01,,\ncu-2,op-1,B,dental,Austin,2025-01-01,,\n"
    );
    let err = read_raw(d, Format::Csv, open.as_bytes(), "/src/crm/customers.csv")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        err,
        "cannot read /src/crm/customers.csv: a quoted field opened on line 2 is never closed"
    );
    Ok(())
}

/// On well-formed files the hand-written CSV reader reads what Polars' reader
/// reads (blank and empty both missing), so generated sources give the same
/// snapshots as before.
#[test]
fn csv_reader_agrees_with_polars_on_generated_files() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    crate::generate::generate(&crate::generate::GenerateOptions {
        out: dir.path().to_path_buf(),
        operators: 12,
        months: 4,
        end: opnet_pipelines::Period::parse("2025-08")?,
        seed: 3,
        format: crate::generate::Format::Csv,
    })?;
    for d in ALL {
        let bytes = std::fs::read(dir.path().join(format!("{}.csv", d.path())))?;
        let mine = read_raw(d, Format::Csv, &bytes, "f.csv")?;
        assert!(mine.problems.is_empty(), "{}", d.path());
        let theirs = CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .into_reader_with_file_handle(Cursor::new(&bytes))
            .finish()?;
        assert_eq!(mine.frame.height(), theirs.height(), "{}", d.path());
        for c in d.columns {
            let norm = |df: &DataFrame| -> anyhow::Result<Vec<Option<String>>> {
                Ok(column_strs(df, c.name)?
                    .into_iter()
                    .map(|v| v.filter(|v| !blank(v)))
                    .collect())
            };
            assert_eq!(
                norm(&mine.frame)?,
                norm(&theirs)?,
                "{}.{}",
                d.path(),
                c.name
            );
        }
    }
    Ok(())
}

/// Issue 9 items 10 and 17: `refunds.amount_cents` typed as a float in Parquet is
/// quarantined row by row ("not an integer"), never cast to a silent null or a
/// rounded number; the whole dataset quarantined, beyond the allowance, then fails
/// the ingest, naming it, the count and the bound, and no snapshot is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantined_share_over_the_bound_fails_the_ingest() -> anyhow::Result<()> {
    let src = tempfile::tempdir()?;
    let lake_dir = tempfile::tempdir()?;
    let lake = Lake::new(Arc::new(LocalDir::new(lake_dir.path())));
    sample_csv(src.path())?;
    std::fs::remove_file(src.path().join("billing/refunds.csv"))?;
    let mut refunds = df!(
        "refund_id" => ["rf-1", "rf-2"], "invoice_id" => ["inv-1", "inv-1"], "line_no" => [1i64, 1],
        "refunded_on" => ["2025-08-10", "2025-08-11"], "amount_cents" => [100.0f64, 12.5],
    )?;
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf).finish(&mut refunds)?;
    write(src.path(), "billing/refunds.parquet", &buf)?;
    let source = LocalDir::new(src.path());
    // Two bad rows are within the default allowance of 10: quarantined, reported,
    // and the month goes on.
    let few = ingest(&source, &lake, at(1, 0, 0)).await?;
    let refunds = few.datasets.iter().find(|d| d.dataset == "billing/refunds");
    assert_eq!(refunds.map(|d| d.rows_quarantined), Some(2));
    // Without the allowance, the whole dataset quarantined fails the ingest.
    let strict = IngestConfig {
        quarantine_allowance_rows: 0,
        ..IngestConfig::default()
    };
    let lake_dir = tempfile::tempdir()?;
    let lake = Lake::new(Arc::new(LocalDir::new(lake_dir.path())));
    let err = ingest_with_sources(&source, &lake, at(2, 0, 0), &BTreeMap::new(), &strict)
        .await
        .err();
    let qfile = lake_dir
        .path()
        .join("quarantine/billing/refunds/ingested=2025-09-01T020000Z/part-0.csv");
    assert_eq!(
        err.map(|e| e.to_string()).unwrap_or_default(),
        format!(
            "too many rows quarantined, more than ingest.max_quarantine_share = 0.01 (1 %) and \
             ingest.quarantine_allowance_rows = 0 allow: \
             billing/refunds: 2 of 2 rows quarantined (100 %), see {}. Nothing was ingested: correct \
             the source (each quarantine line says why its row was refused) or raise the bound, then ingest again",
            qfile.display()
        )
    );
    assert_eq!(lake.latest_snapshot().await?, None, "no snapshot recorded");
    assert!(
        !lake_dir.path().join("raw/billing").exists(),
        "no snapshot data written"
    );
    let q = std::fs::read_to_string(&qfile)?;
    assert!(
        q.contains(",1,amount_cents,\"not an integer: \"\"100.0\"\"\",rf-1,"),
        "{q}"
    );
    assert!(
        q.contains(",2,amount_cents,\"not an integer: \"\"12.5\"\"\",rf-2,"),
        "{q}"
    );

    // A bound that allows it: the rows stay quarantined, the snapshot is made.
    let loose = IngestConfig {
        max_quarantine_share: 1.0,
        ..IngestConfig::default()
    };
    let r = ingest_with_sources(&source, &lake, at(2, 0, 1), &BTreeMap::new(), &loose).await?;
    let refunds = r.datasets.iter().find(|d| d.dataset == "billing/refunds");
    assert_eq!(
        refunds.map(|d| (d.rows_in, d.rows_ok, d.rows_quarantined)),
        Some((2, 0, 2))
    );
    // At the bound exactly is not over it.
    let reports = [DatasetReport {
        dataset: "crm/operators".into(),
        source: String::new(),
        rows_in: 100,
        rows_ok: 99,
        rows_quarantined: 1,
        rows_collapsed: 0,
        warnings: 0,
        quarantine: None,
        warnings_file: None,
    }];
    assert!(check_quarantine_share(&reports, 0.01, 0).is_ok());
    assert!(check_quarantine_share(&reports, 0.009, 0).is_err());
    // Within the allowance the share alone never fails.
    assert!(check_quarantine_share(&reports, 0.009, 1).is_ok());
    let mut many = reports.clone();
    many[0].rows_quarantined = 11;
    many[0].rows_ok = 89;
    assert!(check_quarantine_share(&many, 0.01, 10).is_err());
    assert!(check_quarantine_share(&many, 0.2, 10).is_ok());
    Ok(())
}

/// Issue 9 item 17: a typed value that cannot be read as text (bytes that are not
/// UTF-8 in a Parquet binary column) is quarantined, not turned into a null.
#[test]
fn typed_values_never_become_silent_nulls() -> anyhow::Result<()> {
    let d = &contract::CUSTOMERS;
    let bin = |v: &[Option<&[u8]>]| -> Column {
        BinaryChunked::from_iter_options("churned_on".into(), v.iter().copied()).into_column()
    };
    let mut df = df!(
        "customer_id" => ["cu-1", "cu-2"], "operator_id" => ["op-1", "op-1"], "name" => ["A", "B"],
        "vertical" => ["v", "v"], "metro" => ["m", "m"],
        "contract_signed_on" => ["2025-01-01", "2025-01-01"], "go_live_on" => [None::<&str>, None],
    )?;
    df.with_column(bin(&[Some(b"2025-06-30"), Some(b"\xff\xfe")]))?;
    let v = validate(d, df, "f.parquet", &rules())?;
    assert_eq!(
        column_strs(&v.ok, "churned_on")?,
        [Some("2025-06-30".to_string())]
    );
    assert_eq!(
        quarantine_lines(&v.quarantine)?,
        [(
            2,
            "churned_on".into(),
            "a binary value that cannot be read as text".into()
        )]
    );
    Ok(())
}

/// Issue 9 item 12: a SQL source's connection error and label never show its
/// password, whichever form it takes.
#[tokio::test]
async fn sql_source_errors_mask_credentials() {
    for url in [
        "postgres://u:S3cretA@127.0.0.1:1/db",
        "postgres://u@127.0.0.1:1/db?password=S3cretA",
        "postgres://u@127.0.0.1:1/db?sslmode=disable&sslpassword=S3cretA",
    ] {
        let src = SqlSource {
            url: url.into(),
            query: "SELECT 1".into(),
        };
        let mut conns = BTreeMap::new();
        let err = read_sql(&contract::OPERATORS, &src, &mut conns)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("SQL source sql:postgres://u"), "{err}");
        assert!(err.contains("*****"), "{err}");
        assert!(!err.contains("S3cretA"), "{err}");
    }
}

/// JSON Lines: a line naming a contract column twice (which copy counts cannot
/// be told), a line that is not UTF-8 and a line that is not a JSON object are
/// quarantined with their row numbers; the rest of the file is read.
#[test]
fn jsonl_lines_that_cannot_be_read_are_quarantined_with_their_row() -> anyhow::Result<()> {
    let d = &contract::OPERATORS;
    let ok = |id: &str| {
        format!(
            "{{\"operator_id\":\"{id}\",\"name\":\"N\",\"email\":\"{id}@x.io\",\"metro\":\"M\",\"verticals\":\"v\",\"joined_on\":\"2024-01-01\",\"terminated_on\":null}}"
        )
    };
    let mut text = Vec::new();
    text.extend_from_slice(ok("op-1").as_bytes());
    text.extend_from_slice(b"\n\n");
    let twice = ok("op-2").replace("}", ",\"email\":\"eve@evil.io\"}");
    text.extend_from_slice(twice.as_bytes());
    text.extend_from_slice(b"\n");
    let latin1 = ok("op-3").replace("\"N\"", "\"N\u{1}\"").into_bytes();
    text.extend(latin1.into_iter().map(|b| if b == 1 { 0xE9 } else { b }));
    text.extend_from_slice(b"\n[1, 2]\n");
    text.extend_from_slice(ok("op-5").as_bytes());
    text.extend_from_slice(b"\r\n");
    let raw = read_raw(d, Format::JsonLines, &text, "f.jsonl")?;
    let v = validate(d, raw, "f.jsonl", &rules())?;
    assert_eq!(
        column_strs(&v.ok, "operator_id")?,
        [Some("op-1".to_string()), Some("op-5".to_string())]
    );
    let lines = quarantine_lines(&v.quarantine)?;
    assert_eq!(
        lines[..2],
        [
            (
                2,
                "email".into(),
                "the key appears 2 times in the object (line 3)".into()
            ),
            (
                3,
                "".into(),
                "not valid UTF-8 (byte 0xE9 at byte 32 of line 4)".into()
            ),
        ]
    );
    assert_eq!(lines[2].0, 4);
    assert!(
        lines[2]
            .2
            .starts_with("not a JSON object: invalid type: sequence"),
        "{lines:?}"
    );
    assert!(lines[2].2.ends_with("(line 5)"), "{lines:?}");
    assert_eq!(lines.len(), 3);
    Ok(())
}

/// A NUL in any text, and control characters or surrounding spaces in an id, are
/// quarantined: `OP-0001 ` with another address would be a second operator that
/// the key check cannot see. A service period ending before it starts is a
/// warning (the line is paid; it adds nothing to MRR).
#[test]
fn ids_and_text_that_would_pass_for_something_else() -> anyhow::Result<()> {
    let text = format!(
        "{OPERATORS_HEADER}\
         op-1,Ann,ann@x.io,Austin,dental,2024-01-01,\n\
         op-1 ,Eve,eve@evil.io,Austin,dental,2024-01-01,\n\
         \"op-1\r\",Eve,eve@evil.io,Austin,dental,2024-01-01,\n\
         op-4,Di\u{0},di@x.io,Austin,dental,2024-01-01,\n"
    );
    let d = &contract::OPERATORS;
    let v = validate(d, read(d, text.as_bytes())?, "f.csv", &rules())?;
    assert_eq!(
        column_strs(&v.ok, "operator_id")?,
        [Some("op-1".to_string())]
    );
    assert_eq!(
        quarantine_lines(&v.quarantine)?,
        [
            (
                2,
                "operator_id".into(),
                "an id with leading or trailing whitespace: \"op-1 \"".into()
            ),
            (
                3,
                "operator_id".into(),
                "an id with a control character: \"op-1\\r\"".into()
            ),
            (
                4,
                "name".into(),
                "contains a NUL character: \"Di\\0\"".into()
            ),
        ]
    );
    let lines = "invoice_id,line_no,revenue_type,amount_cents,service_start,service_end\n\
        inv-1,1,software,100,2025-08-01,2025-08-31\ninv-1,2,software,100,2025-08-31,2025-08-01\n";
    let d = &contract::INVOICE_LINES;
    let v = validate(d, read(d, lines.as_bytes())?, "f.csv", &rules())?;
    assert_eq!(v.ok.height(), 2);
    assert_eq!(
        quarantine_lines(&v.warnings)?,
        [(2, "service_end".into(), "service_end 2025-08-01 is before service_start 2025-08-31: the line is paid, but counts nothing toward MRR (R6.1)".into())]
    );
    Ok(())
}
