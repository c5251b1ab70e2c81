//! The database side of lead distribution: what a run reads (the latest closed
//! period's tiers and R8.1 totals, opnet's earlier assignments) and how it writes
//! `lead_assignments` so that an assigned lead is never assigned again — also by two
//! runs that somehow raced past the lease.

use std::collections::BTreeMap;

use polars::prelude::*;
use sqlx::{AnyConnection, Row};

use crate::db::{self, DbError, Value};

use super::{Assignment, LeadError};

/// The latest closed period before T's month `t_month` (`YYYY-MM`): the latest
/// period with a succeeded payouts run (R8.3 "latest closed period"); `None` when
/// nothing is closed yet.
pub async fn latest_closed_period(
    conn: &mut AnyConnection,
    t_month: &str,
) -> Result<Option<String>, DbError> {
    sqlx::query_scalar(
        "SELECT MAX(period) FROM job_runs WHERE job = 'payouts' AND status = 'succeeded' AND period < $1",
    )
    .bind(t_month)
    .fetch_one(&mut *conn)
    .await
    .map_err(DbError::query("reading the latest closed period"))
}

/// The standing `assign_leads` reads (`operator_id`, `tier`, `total_score`) of
/// closed period `period`: its `operator_tiers`, and its R8.1 `total` scores from
/// `operator_scorecards` (a period closed before the scorecard job existed has none:
/// then every score is null). An operator with a score but no tier row has tier
/// `none`.
pub async fn standing(conn: &mut AnyConnection, period: &str) -> Result<DataFrame, DbError> {
    let mut by_op: BTreeMap<String, (Option<String>, Option<f64>)> = BTreeMap::new();
    let tiers = sqlx::query("SELECT operator_id, tier FROM operator_tiers WHERE period = $1")
        .bind(period)
        .fetch_all(&mut *conn)
        .await
        .map_err(DbError::query("reading operator_tiers"))?;
    for r in &tiers {
        let d = || DbError::query("decoding operator_tiers");
        let op: String = r.try_get(0).map_err(d())?;
        by_op.entry(op).or_default().0 = r.try_get(1).map_err(d())?;
    }
    let scores = sqlx::query(
        "SELECT operator_id, score FROM operator_scorecards WHERE period = $1 AND component = 'total'",
    )
    .bind(period)
    .fetch_all(&mut *conn)
    .await
    .map_err(DbError::query("reading operator_scorecards"))?;
    for r in &scores {
        let d = || DbError::query("decoding operator_scorecards");
        let op: String = r.try_get(0).map_err(d())?;
        by_op.entry(op).or_default().1 = r.try_get(1).map_err(d())?;
    }
    let frame_err = |source| DbError::Frame {
        table: "standing".into(),
        source,
    };
    let n = by_op.len();
    let (mut ids, mut tier, mut total) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (op, (t, s)) in by_op {
        ids.push(op);
        tier.push(t.unwrap_or_else(|| "none".into()));
        total.push(s);
    }
    DataFrame::new(
        n,
        vec![
            Column::new("operator_id".into(), ids),
            Column::new("tier".into(), tier),
            Column::new("total_score".into(), total),
        ],
    )
    .map_err(frame_err)
}

/// An empty standing: nothing closed yet, every operator has tier `none` and a null
/// score (R8.3).
pub fn no_standing() -> PolarsResult<DataFrame> {
    DataFrame::new(
        0,
        vec![
            Column::new_empty("operator_id".into(), &DataType::String),
            Column::new_empty("tier".into(), &DataType::String),
            Column::new_empty("total_score".into(), &DataType::Float64),
        ],
    )
}

/// opnet's earlier rows (`lead_id`, `operator_id`; null for a lead still
/// `no_capacity`).
pub async fn earlier(conn: &mut AnyConnection) -> Result<DataFrame, DbError> {
    db::query_frame(
        conn,
        "SELECT lead_id, operator_id FROM lead_assignments ORDER BY lead_id",
        &[],
        &[
            ("lead_id", DataType::String),
            ("operator_id", DataType::String),
        ],
    )
    .await
}

/// Rows per statement: 6 parameters each, far under both backends' limits.
const ROWS_PER_INSERT: usize = 500;

/// Write a run's rows: every assignment, replacing the lead's `no_capacity` row if
/// it has one (never an assigned row), and a `no_capacity` row for each lead that has
/// no row yet (a lead still without capacity keeps the row of the run that first
/// tried it). A statement that lands fewer rows than it wrote means another run
/// assigned one of the leads meanwhile: the run fails ([`LeadError::Raced`]) and
/// rolls back, and its next attempt reads the assignments again.
pub async fn write(
    conn: &mut AnyConnection,
    run_id: &str,
    assigned_at: &str,
    assigned: &[Assignment],
    no_capacity: &[Assignment],
) -> Result<u64, LeadError> {
    let mut written = 0;
    for (rows, on_conflict) in [
        (
            assigned,
            "ON CONFLICT (lead_id) DO UPDATE SET operator_id = excluded.operator_id, rule = excluded.rule, \
             score = excluded.score, assigned_at = excluded.assigned_at, run_id = excluded.run_id, \
             written_back_at = NULL WHERE lead_assignments.operator_id IS NULL",
        ),
        (no_capacity, "ON CONFLICT (lead_id) DO NOTHING"),
    ] {
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let positional = conn.backend_name() == "SQLite";
            let mut sql = String::from(
                "INSERT INTO lead_assignments (lead_id, operator_id, rule, score, assigned_at, run_id) VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                if positional {
                    sql.push_str("(?, ?, ?, ?, ?, ?)");
                } else {
                    let b = i * 6;
                    sql.push_str(&format!(
                        "(${}, ${}, ${}, ${}, ${}, ${})",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5,
                        b + 6
                    ));
                }
            }
            sql.push(' ');
            sql.push_str(on_conflict);
            let mut q = sqlx::query(&sql).persistent(false);
            for a in chunk {
                q = q
                    .bind(a.lead_id.clone())
                    .bind(a.operator_id.clone())
                    .bind(a.rule.clone())
                    .bind(a.score)
                    .bind(assigned_at.to_string())
                    .bind(run_id.to_string());
            }
            let landed = q
                .execute(&mut *conn)
                .await
                .map_err(|source| LeadError::Sql {
                    context: "writing lead_assignments".into(),
                    source,
                })?
                .rows_affected();
            if landed != chunk.len() as u64 {
                return Err(LeadError::Raced {
                    wrote: chunk.len(),
                    landed,
                });
            }
            written += landed;
        }
    }
    Ok(written)
}

/// Remove the `no_capacity` rows of `leads` (never an assigned row); returns how
/// many went.
pub async fn release(conn: &mut AnyConnection, leads: &[String]) -> Result<u64, LeadError> {
    let mut removed = 0;
    for chunk in leads.chunks(ROWS_PER_INSERT) {
        let marks = (1..=chunk.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "DELETE FROM lead_assignments WHERE operator_id IS NULL AND lead_id IN ({marks})"
        );
        let mut q = sqlx::query(&sql).persistent(false);
        for l in chunk {
            q = q.bind(l.clone());
        }
        removed += q
            .execute(&mut *conn)
            .await
            .map_err(|source| LeadError::Sql {
                context: "removing waiting leads the CRM assigned".into(),
                source,
            })?
            .rows_affected();
    }
    Ok(removed)
}

/// Leads still waiting with `no_capacity`.
pub async fn waiting(conn: &mut AnyConnection) -> Result<i64, DbError> {
    sqlx::query_scalar("SELECT COUNT(*) FROM lead_assignments WHERE operator_id IS NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(DbError::query("counting waiting leads"))
}

/// Assigned leads not yet written back to the CRM's table.
pub async fn not_written_back(conn: &mut AnyConnection) -> Result<i64, DbError> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM lead_assignments WHERE operator_id IS NOT NULL AND written_back_at IS NULL",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(DbError::query("counting leads not written back"))
}

/// One row of `lead_assignments` as people and the CRM see it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRow {
    pub lead_id: String,
    pub operator_id: Option<String>,
    pub rule: String,
    pub score: Option<f64>,
    pub assigned_at: String,
    pub run_id: String,
}

/// Rows of `lead_assignments` matching `filter` (a `WHERE` clause over `binds`),
/// by `assigned_at`, then `lead_id`.
pub async fn rows(
    conn: &mut AnyConnection,
    filter: &str,
    binds: &[Value],
) -> Result<Vec<StoredRow>, DbError> {
    let sql = format!(
        "SELECT lead_id, operator_id, rule, score, assigned_at, run_id FROM lead_assignments \
         WHERE {filter} ORDER BY assigned_at, lead_id"
    );
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = match b {
            Value::Text(s) => q.bind(s.clone()),
            Value::Int(i) => q.bind(*i),
        };
    }
    let found = q
        .fetch_all(&mut *conn)
        .await
        .map_err(DbError::query("reading lead_assignments"))?;
    found
        .iter()
        .map(|r| {
            Ok(StoredRow {
                lead_id: r.try_get(0)?,
                operator_id: r.try_get(1)?,
                rule: r.try_get(2)?,
                score: r.try_get(3)?,
                assigned_at: r.try_get(4)?,
                run_id: r.try_get(5)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DbError::query("decoding lead_assignments"))
}
