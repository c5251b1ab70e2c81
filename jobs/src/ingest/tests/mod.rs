//! Unit tests of ingest, by room: reading each format (`read`), validating against
//! the contract (`validate`: types, allowed values, keys, bounds, the date window),
//! SQL sources (`sql`), optional contract columns (`optional`), and whole ingests
//! (`snapshot`: quarantine and warnings files, the quarantine bound, snapshot reuse
//! by fingerprint). The fixtures they share are here.

use super::*;
use chrono::NaiveDate;
use opnet_pipelines::contract::ColType;
use std::path::Path;

mod optional;
mod read;
mod snapshot;
mod sql;
mod validate;

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

fn read(d: &Dataset, text: &[u8]) -> anyhow::Result<Raw> {
    Ok(read_raw(d, Format::Csv, text, "f.csv")?)
}

fn column_strs(df: &DataFrame, name: &str) -> anyhow::Result<Vec<Option<String>>> {
    let s = df.column(name)?.cast(&DataType::String)?;
    Ok(s.str()?.iter().map(|v| v.map(str::to_string)).collect())
}

const OPERATORS_HEADER: &str = "operator_id,name,email,metro,verticals,joined_on,terminated_on\n";
