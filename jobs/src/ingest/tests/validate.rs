//! Validation of one dataset: quarantine reasons per type, the strict parsers,
//! duplicate keys, the money bound, the date window, email warnings, typed values
//! that cannot become silent nulls, and ids that would pass for another.

use super::*;
use crate::ingest::values::{parse_date, parse_ts};
use chrono::TimeZone;
use opnet_pipelines::contract::Check;

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
