//! Tests of the lake: snapshot ids and their order, contract dtypes on read,
//! incomplete snapshots, latest/by-fingerprint lookups, old manifests, marts and
//! other files (reports, charts).

use super::*;
use crate::store::LocalDir;
use opnet_pipelines::contract::ALL;

fn lake() -> anyhow::Result<(tempfile::TempDir, Lake)> {
    let tmp = tempfile::tempdir()?;
    let lake = Lake::new(Arc::new(LocalDir::new(tmp.path())));
    Ok((tmp, lake))
}

/// A complete snapshot of empty, contract-typed frames plus `rows` invoices.
async fn write_empty_snapshot(lake: &Lake, id: &str, fingerprint: &str) -> anyhow::Result<()> {
    let mut datasets = Vec::new();
    for d in ALL {
        let cols: Vec<Column> = d
            .columns
            .iter()
            .map(|c| Column::new_empty(c.name.into(), &c.ty.dtype()))
            .collect();
        let mut df = DataFrame::new(0, cols)?;
        lake.write_snapshot(d, id, &mut df).await?;
        datasets.push(ManifestDataset {
            dataset: d.path(),
            source: format!("/src/{}.csv", d.path()),
            format: "csv".into(),
            rows_in: 0,
            rows_ok: 0,
            rows_quarantined: 0,
            rows_collapsed: 0,
            warnings: 0,
            data: Lake::snapshot_key(d, id),
            quarantine: None,
            warnings_file: None,
        });
    }
    lake.write_manifest(&SnapshotManifest {
        snapshot: id.into(),
        fingerprint: fingerprint.into(),
        created_at: Utc::now(),
        datasets,
    })
    .await?;
    Ok(())
}

#[test]
fn keys() -> anyhow::Result<()> {
    assert_eq!(
        Lake::snapshot_key(&contract::INVOICES, "2025-09-01T020000Z"),
        "raw/billing/invoices/ingested=2025-09-01T020000Z/part-0.parquet"
    );
    assert_eq!(
        Lake::mart_key("payout_statements", Period::parse("2025-08")?),
        "marts/payout_statements/period=2025-08/part-0.parquet"
    );
    Ok(())
}

#[test]
fn snapshot_ids_sort_by_time_then_suffix() {
    let mut ids = vec![
        "2025-09-01T020000Z-10",
        "2025-09-01T020000Z-2",
        "2025-09-02T000000Z",
        "2025-09-01T020000Z",
    ];
    ids.sort_by(|a, b| snapshot_order(a).cmp(&snapshot_order(b)));
    assert_eq!(
        ids,
        [
            "2025-09-01T020000Z",
            "2025-09-01T020000Z-2",
            "2025-09-01T020000Z-10",
            "2025-09-02T000000Z"
        ]
    );
}

// Multi-threaded: collecting a lazy Parquet scan blocks in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_snapshot_has_contract_dtypes() -> anyhow::Result<()> {
    let (_tmp, lake) = lake()?;
    write_empty_snapshot(&lake, "2025-09-01T020000Z", "abc").await?;
    let inputs = lake.read_snapshot("2025-09-01T020000Z").await?;
    let schema = inputs.leads.clone().collect_schema()?;
    assert_eq!(
        schema.get("created_at"),
        Some(&DataType::Datetime(TimeUnit::Milliseconds, None))
    );
    assert_eq!(
        schema.len(),
        contract::LEADS.columns.len(),
        "no hive column: {schema:?}"
    );
    let inv = inputs.invoices.collect()?;
    for c in contract::INVOICES.columns {
        assert_eq!(inv.column(c.name)?.dtype(), &c.ty.dtype());
    }
    Ok(())
}

#[tokio::test]
async fn incomplete_snapshot_is_not_found() -> anyhow::Result<()> {
    let (_tmp, lake) = lake()?;
    let mut df = DataFrame::new(0, vec![])?;
    lake.write_snapshot(&contract::INVOICES, "2025-09-01T020000Z", &mut df)
        .await?;
    let err = lake.read_snapshot("2025-09-01T020000Z").await.err();
    assert!(
        matches!(err, Some(LakeError::SnapshotNotFound { .. })),
        "{err:?}"
    );
    assert_eq!(lake.latest_snapshot().await?, None);
    assert!(lake.snapshot_id_taken("2025-09-01T020000Z").await?);
    Ok(())
}

#[tokio::test]
async fn latest_and_by_fingerprint() -> anyhow::Result<()> {
    let (_tmp, lake) = lake()?;
    write_empty_snapshot(&lake, "2025-09-01T020000Z", "aaa").await?;
    write_empty_snapshot(&lake, "2025-09-01T020000Z-2", "bbb").await?;
    write_empty_snapshot(&lake, "2025-08-01T020000Z", "ccc").await?;
    assert_eq!(
        lake.latest_snapshot().await?.as_deref(),
        Some("2025-09-01T020000Z-2")
    );
    assert_eq!(
        lake.find_snapshot_by_fingerprint("aaa").await?.as_deref(),
        Some("2025-09-01T020000Z")
    );
    assert_eq!(lake.find_snapshot_by_fingerprint("zzz").await?, None);
    let m = lake.read_manifest("2025-08-01T020000Z").await?;
    assert_eq!(m.fingerprint, "ccc");
    assert_eq!(m.datasets.len(), ALL.len());
    Ok(())
}

/// A manifest written before the warning counts existed still reads (zeros).
#[test]
fn old_manifest_without_warning_counts_reads() -> anyhow::Result<()> {
    let text = "snapshot = \"s\"\nfingerprint = \"f\"\ncreated_at = \"2025-09-01T02:00:00Z\"\n\
        [[datasets]]\ndataset = \"crm/operators\"\nsource = \"/src/crm/operators.csv\"\nformat = \"csv\"\n\
        rows_in = 3\nrows_ok = 2\nrows_quarantined = 1\ndata = \"raw/x\"\nquarantine = \"quarantine/x\"\n";
    let m: SnapshotManifest = toml::from_str(text)?;
    let d = &m.datasets[0];
    assert_eq!(
        (d.rows_collapsed, d.warnings, d.warnings_file.as_deref()),
        (0, 0, None)
    );
    assert_eq!(d.quarantine.as_deref(), Some("quarantine/x"));
    Ok(())
}

#[tokio::test]
async fn write_mart_overwrites() -> anyhow::Result<()> {
    let (tmp, lake) = lake()?;
    let p = Period::parse("2025-08")?;
    let mut a = df!("operator_id" => ["op-1", "op-2"], "payable_cents" => [10i64, 20])?;
    let loc = lake.write_mart("payout_statements", p, &mut a).await?;
    assert_eq!(
        loc,
        tmp.path()
            .join("marts/payout_statements/period=2025-08/part-0.parquet")
            .display()
            .to_string()
    );
    let mut b = df!("operator_id" => ["op-3"], "payable_cents" => [30i64])?;
    lake.write_mart("payout_statements", p, &mut b).await?;
    let bytes = lake
        .store()
        .get(&Lake::mart_key("payout_statements", p))
        .await?;
    let back = ParquetReader::new(std::io::Cursor::new(bytes)).finish()?;
    assert!(back.equals(&b), "{back}");
    let listed = lake.store().list("marts/payout_statements/").await?;
    assert_eq!(listed.len(), 1, "{listed:?}");
    Ok(())
}

#[tokio::test]
async fn put_file_returns_location() -> anyhow::Result<()> {
    let (tmp, lake) = lake()?;
    let loc = lake
        .put_file("reports/2025-08/summary.html", b"<p>hi</p>".to_vec())
        .await?;
    assert_eq!(
        loc,
        tmp.path()
            .join("reports/2025-08/summary.html")
            .display()
            .to_string()
    );
    assert_eq!(std::fs::read(&loc)?, b"<p>hi</p>");
    Ok(())
}

/// R8.1: the optional crm/leads column `referred_by_operator_id` reads back
/// exactly when the snapshot has it (never filled in as nulls), and a file whose
/// optional column has another type than the contract's fails naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r8_1_read_snapshot_keeps_optional_columns_as_written() -> anyhow::Result<()> {
    let (_tmp, lake) = lake()?;
    write_empty_snapshot(&lake, "2025-09-01T020000Z", "abc").await?;
    let leads = |referred: Series| -> anyhow::Result<DataFrame> {
        let mut cols: Vec<Column> = contract::LEADS
            .columns
            .iter()
            .map(|c| Column::new_empty(c.name.into(), &c.ty.dtype()))
            .collect();
        cols.push(referred.into_column());
        Ok(DataFrame::new(0, cols)?)
    };
    let schema_of = async |lake: &Lake| -> anyhow::Result<Schema> {
        let inputs = lake.read_snapshot("2025-09-01T020000Z").await?;
        Ok(inputs.leads.clone().collect_schema()?.as_ref().clone())
    };
    let name = "referred_by_operator_id";
    assert_eq!(
        schema_of(&lake).await?.get(name),
        None,
        "absent stays absent"
    );

    let mut with = leads(Series::new_empty(name.into(), &DataType::String))?;
    lake.write_snapshot(&contract::LEADS, "2025-09-01T020000Z", &mut with)
        .await?;
    assert_eq!(schema_of(&lake).await?.get(name), Some(&DataType::String));

    let mut wrong = leads(Series::new_empty(name.into(), &DataType::Int64))?;
    lake.write_snapshot(&contract::LEADS, "2025-09-01T020000Z", &mut wrong)
        .await?;
    let err = lake
        .read_snapshot("2025-09-01T020000Z")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.ends_with("column referred_by_operator_id is i64, the contract says str"),
        "{err}"
    );
    Ok(())
}
