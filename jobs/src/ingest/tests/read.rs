//! Reading source files: missing and repeated columns, CSV rows and JSON Lines lines
//! that cannot be read (quarantined with their row), and the CSV reader agreeing with
//! Polars' on well-formed files.

use super::*;
use crate::ingest::values::blank;
use opnet_pipelines::contract::ALL;
use std::io::Cursor;

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
