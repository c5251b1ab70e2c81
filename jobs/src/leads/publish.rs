//! Publishing a lead run for the CRM to import (R8.3): its rows as a Parquet mart
//! and as a CSV under the lake, read back from the database after the commit — the
//! same rule as the close's marts: what is published is what was committed. The
//! ledger records it (`job_runs.published_at`), so a run committed by a process that
//! died before publishing is published by the next lead run or wake-up
//! ([`publish_pending`]).
//!
//! Layout (by T's UTC date, then run, so a CRM importer can pick up one day's files
//! or one run's):
//!
//! ```text
//! marts/lead_assignments/date=YYYY-MM-DD/run=<run_id>/part-0.parquet
//! exports/lead_assignments/date=YYYY-MM-DD/<run_id>.csv
//! ```
//!
//! A run that wrote no row (nothing new) publishes no file.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use polars::prelude::*;
use sqlx::Row;

use crate::app::App;
use crate::db::{self, TableSpec, Value};
use crate::mail::render::csv_row;

use super::JOB;
use super::store::{self, StoredRow};

use DataType::{Float64 as F, String as S};

/// `assigned_at` in the mart: milliseconds, UTC, like the contract's `ts` columns of
/// the raw snapshots.
const TS: DataType = DataType::Datetime(TimeUnit::Milliseconds, None);

/// The published columns of `lead_assignments` (`written_back_at` is opnet's own
/// bookkeeping and stays in the database).
pub const OUTPUT: TableSpec = TableSpec {
    table: "lead_assignments",
    columns: &[
        ("lead_id", S),
        ("operator_id", S),
        ("rule", S),
        ("score", F),
        ("assigned_at", TS),
        ("run_id", S),
    ],
    order_by: "assigned_at, lead_id",
    changes_after_run: false,
};

/// The lake keys of run `run_id` at time `at`: (mart, CSV).
pub fn keys(run_id: &str, at: DateTime<Utc>) -> (String, String) {
    let date = at.format("%Y-%m-%d");
    (
        format!("marts/lead_assignments/date={date}/run={run_id}/part-0.parquet"),
        format!("exports/lead_assignments/date={date}/{run_id}.csv"),
    )
}

/// The run's rows as its mart: the [`OUTPUT`] columns and types.
pub fn mart_frame(rows: &[StoredRow]) -> Result<DataFrame> {
    let at: Vec<Option<i64>> = rows
        .iter()
        .map(|r| {
            DateTime::parse_from_rfc3339(&r.assigned_at)
                .map(|t| t.timestamp_millis())
                .with_context(|| {
                    format!(
                        "lead_assignments.assigned_at {:?} of lead {}",
                        r.assigned_at, r.lead_id
                    )
                })
                .map(Some)
        })
        .collect::<Result<_>>()?;
    let n = rows.len();
    let df = DataFrame::new(
        n,
        vec![
            Column::new(
                "lead_id".into(),
                rows.iter().map(|r| r.lead_id.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "operator_id".into(),
                rows.iter()
                    .map(|r| r.operator_id.clone())
                    .collect::<Vec<_>>(),
            ),
            Column::new(
                "rule".into(),
                rows.iter().map(|r| r.rule.clone()).collect::<Vec<_>>(),
            ),
            Column::new(
                "score".into(),
                rows.iter().map(|r| r.score).collect::<Vec<_>>(),
            ),
            Column::new("assigned_at".into(), at),
            Column::new(
                "run_id".into(),
                rows.iter().map(|r| r.run_id.clone()).collect::<Vec<_>>(),
            ),
        ],
    )?;
    let casts: Vec<Expr> = OUTPUT
        .columns
        .iter()
        .map(|(c, t)| col(*c).strict_cast(t.clone()))
        .collect();
    Ok(df.lazy().select(casts).collect()?)
}

/// The run's rows as the CSV the CRM imports (RFC 4180, header row; `operator_id`
/// and `score` empty for `no_capacity`; `score` with every digit it has).
pub fn csv(rows: &[StoredRow]) -> String {
    let mut out = String::new();
    csv_row(
        &mut out,
        &[
            "lead_id",
            "operator_id",
            "rule",
            "score",
            "assigned_at",
            "run_id",
        ],
    );
    for r in rows {
        let score = r.score.map(|s| s.to_string()).unwrap_or_default();
        csv_row(
            &mut out,
            &[
                &r.lead_id,
                r.operator_id.as_deref().unwrap_or(""),
                &r.rule,
                &score,
                &r.assigned_at,
                &r.run_id,
            ],
        );
    }
    out
}

/// Publish run `run_id` (run at `at`) from the committed rows, then record it in the
/// ledger. Returns the locations written (none for a run that wrote no row).
pub async fn publish_run(app: &App, run_id: &str, at: DateTime<Utc>) -> Result<Vec<String>> {
    let mut conn = app.db.pool.acquire().await.context("acquire")?;
    let rows = store::rows(&mut conn, "run_id = $1", &[Value::Text(run_id.to_string())]).await?;
    drop(conn);
    let mut written = Vec::new();
    if !rows.is_empty() {
        let (mart, csv_key) = keys(run_id, at);
        let mut df = mart_frame(&rows)?;
        let mut bytes = Vec::new();
        ParquetWriter::new(&mut bytes)
            .finish(&mut df)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("writing {mart}"))?;
        written.push(
            app.lake
                .put_file(&mart, bytes)
                .await
                .with_context(|| format!("publishing {mart}"))?,
        );
        written.push(
            app.lake
                .put_file(&csv_key, csv(&rows).into_bytes())
                .await
                .with_context(|| format!("publishing {csv_key}"))?,
        );
    }
    sqlx::query("UPDATE job_runs SET published_at = $1 WHERE run_id = $2")
        .bind(db::timestamp(Utc::now()))
        .bind(run_id)
        .execute(&app.db.pool)
        .await
        .with_context(|| format!("recording the publication of {run_id}"))?;
    Ok(written)
}

/// Publish every succeeded lead run whose publication is not recorded (a process
/// died between its commit and its publication). Returns how many.
pub async fn publish_pending(app: &App) -> Result<usize> {
    let pending = sqlx::query(
        "SELECT r.run_id, MAX(a.assigned_at) FROM job_runs r LEFT JOIN lead_assignments a ON a.run_id = r.run_id \
         WHERE r.job = $1 AND r.status = 'succeeded' AND r.published_at IS NULL GROUP BY r.run_id ORDER BY r.run_id",
    )
    .bind(JOB)
    .fetch_all(&app.db.pool)
    .await
    .context("reading lead runs to publish")?;
    let mut n = 0;
    for r in &pending {
        let run_id: String = r.try_get(0)?;
        let at: Option<String> = r.try_get(1)?;
        let at = match at {
            Some(t) => DateTime::parse_from_rfc3339(&t)
                .with_context(|| format!("assigned_at {t:?} of run {run_id}"))?
                .with_timezone(&Utc),
            // No row left: nothing to write, only the record.
            None => Utc::now(),
        };
        publish_run(app, &run_id, at).await?;
        tracing::info!(%run_id, "Published lead assignments");
        n += 1;
    }
    Ok(n)
}
