//! Job `network_health` — the leadership figures (R5) for M, and the report: the KPI
//! table against targets with 12-month trends, written to the lake and emailed to the
//! leadership list with the numbers as CSV.
//!
//! It reads M's tiers and statements from the payouts job's committed results (same
//! close, earlier in the registry) and the trend from earlier periods' rows.

use super::*;
use crate::db::{Value, bool_as_int, query_frame};
use crate::mail;
use opnet_pipelines::health::network_health;
use polars::prelude::*;
use sha2::{Digest, Sha256};

pub mod report;

pub struct NetworkHealth;

/// `email_outbox.kind` of the leadership report.
pub const KIND: &str = "network_health";

const JOB: &str = "network_health";

use DataType::{Boolean as B, Float64 as F, Int64 as I, String as S};

/// The tables this job writes, as published: columns and row order.
const OUTPUTS: &[TableSpec] = &[TableSpec {
    table: "network_health",
    columns: &[
        ("period", S),
        ("metric", S),
        ("dimension", S),
        ("value", F),
        ("value_cents", I),
        ("target", F),
        ("on_target", B),
        ("run_id", S),
    ],
    order_by: "metric, dimension",
    changes_after_run: false,
}];

const HEALTH_COLUMNS: [(&str, DataType); 7] = [
    ("period", DataType::String),
    ("metric", DataType::String),
    ("dimension", DataType::String),
    ("value", DataType::Float64),
    ("value_cents", DataType::Int64),
    ("target", DataType::Float64),
    ("on_target", DataType::Boolean),
];

/// network_health rows of the periods M−11..M−1 already in the database.
async fn trend_rows(
    conn: &mut AnyConnection,
    period: Period,
) -> Result<DataFrame, crate::db::DbError> {
    query_frame(
        conn,
        &format!(
            "SELECT period, metric, dimension, value, value_cents, target, {} FROM network_health \
             WHERE period >= $1 AND period < $2 ORDER BY period, metric, dimension",
            bool_as_int("on_target")
        ),
        &[
            Value::Text(period.add_months(-11).to_string()),
            Value::Text(period.to_string()),
        ],
        &HEALTH_COLUMNS,
    )
    .await
}

#[async_trait]
impl Job for NetworkHealth {
    fn name(&self) -> &'static str {
        JOB
    }

    fn inputs(&self) -> &'static [&'static str] {
        &[
            "billing/invoices",
            "billing/invoice_lines",
            "crm/operators",
            "crm/territories",
            "crm/customers",
        ]
    }

    fn outputs(&self) -> &'static [TableSpec] {
        OUTPUTS
    }

    async fn run(
        &self,
        ctx: &JobContext<'_>,
        conn: &mut AnyConnection,
    ) -> Result<JobOutput, JobError> {
        let period = ctx.period;
        let p = period.to_string();
        let pl = JobError::polars(JOB, period);
        let tiers = query_frame(
            conn,
            "SELECT operator_id, tier FROM operator_tiers WHERE period = $1",
            &[Value::Text(p.clone())],
            &[
                ("operator_id", DataType::String),
                ("tier", DataType::String),
            ],
        )
        .await
        .map_err(JobError::db(JOB, period))?;
        let payable = query_frame(
            conn,
            &format!(
                "SELECT s.currency, s.payable_cents {}",
                super::payouts::latest_statements()
            ),
            &[Value::Text(p.clone())],
            &[
                ("currency", DataType::String),
                ("payable_cents", DataType::Int64),
            ],
        )
        .await
        .map_err(JobError::db(JOB, period))?;
        let rows = compute(|| {
            network_health(ctx.inputs, period, ctx.plan, tiers.lazy(), payable.lazy()).collect()
        })
        .map_err(pl)?;
        let rows = cast_like_table(rows).map_err(pl)?;
        let trend = trend_rows(conn, period)
            .await
            .map_err(JobError::db(JOB, period))?;
        let all = trend.vstack(&rows).map_err(pl)?;
        let report = report::render(&p, &all, ctx.plan).map_err(|e| JobError::Data {
            job: JOB,
            period,
            message: e.to_string(),
        })?;
        // Same numbers → same key: a re-run of the month does not send the report again.
        let digest = hex::encode(Sha256::digest(&report.csv));
        let mut emails = Vec::new();
        for to in &ctx.config.email.leadership {
            emails.push(mail::OutgoingEmail {
                dedup_key: mail::dedup_key("network_health", &[&p, to.as_str(), &digest[..16]]),
                kind: KIND.into(),
                audience: mail::Audience::PeriodicInternal,
                period: Some(p.clone()),
                recipient: to.clone(),
                subject: format!("Candlefish network health — {p}"),
                text: report.text.clone(),
                html: Some(report.html.clone()),
                attachments: vec![mail::Attachment {
                    filename: format!("network_health_{p}.csv"),
                    content_type: "text/csv".into(),
                    bytes: report.csv.clone(),
                }],
            });
        }
        Ok(JobOutput {
            summary: vec![format!("network health: {} figures", rows.height())],
            files: vec![(
                format!("reports/network_health/period={p}/report.html"),
                report.html.into_bytes(),
            )],
            writes: vec![TableWrite {
                table: "network_health",
                frame: rows,
                replace: Replace::Period,
                publish: true,
            }],
            emails,
            ..Default::default()
        })
    }
}

/// The pipeline's frame in the table's column order and types, so it stacks onto the
/// rows read back from the database.
fn cast_like_table(df: DataFrame) -> PolarsResult<DataFrame> {
    df.lazy()
        .select(
            HEALTH_COLUMNS
                .iter()
                .map(|(n, t)| col(*n).cast(t.clone()))
                .collect::<Vec<_>>(),
        )
        .collect()
}

/// The report of a closed period from the rows the database holds (`opnet report`,
/// and re-publishing a report whose run crashed before writing it), at the targets
/// of `plan` — the plan in force for the period (R0.5).
pub async fn stored_report(
    conn: &mut AnyConnection,
    period: Period,
    plan: &Plan,
) -> Result<report::Report, JobError> {
    let current = query_frame(
        conn,
        &format!(
            "SELECT period, metric, dimension, value, value_cents, target, {} FROM network_health WHERE period = $1",
            bool_as_int("on_target")
        ),
        &[Value::Text(period.to_string())],
        &HEALTH_COLUMNS,
    )
    .await
    .map_err(JobError::db(JOB, period))?;
    if current.height() == 0 {
        return Err(JobError::Data {
            job: JOB,
            period,
            message: format!(
                "no network_health rows for {period}: run `opnet close --through {period}` first"
            ),
        });
    }
    let trend = trend_rows(conn, period)
        .await
        .map_err(JobError::db(JOB, period))?;
    let rows = trend
        .vstack(&current)
        .map_err(JobError::polars(JOB, period))?;
    report::render(&period.to_string(), &rows, plan).map_err(|e| JobError::Data {
        job: JOB,
        period,
        message: e.to_string(),
    })
}
