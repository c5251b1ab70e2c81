//! The CRM write-back (`[leads.writeback]`, R8.3 "optionally written to a SQL table
//! of the CRM's database"): every assigned lead not yet written back is upserted into
//! the CRM's table on `lead_id` — `operator_id`, `rule`, `assigned_at` — in one
//! transaction of the CRM's database, and then marked in `lead_assignments`
//! (`written_back_at`). A failure leaves the marks unset, so the next run writes the
//! same leads again; since an assigned lead never changes, writing one twice is
//! harmless. `no_capacity` leads are not written: they have no operator.
//!
//! opnet does not create the table (it belongs to the CRM): it must exist with the
//! four columns and a unique key on `lead_id`. On PostgreSQL each value is cast to
//! the column's type (text, varchar, timestamp with or without time zone), so
//! `assigned_at` may be a `timestamptz`.

use anyhow::{Context, Result, anyhow, bail};
use chrono::Utc;
use sqlx::{AnyConnection, Connection, Row};

use crate::app::App;
use crate::db;

use super::config::{Writeback, is_table_name};

/// The columns opnet writes, in order.
const COLUMNS: [&str; 4] = ["lead_id", "operator_id", "rule", "assigned_at"];

/// Rows per statement (4 parameters each).
const ROWS_PER_INSERT: usize = 500;

/// One assigned lead to write back.
struct Pending {
    lead_id: String,
    operator_id: String,
    rule: String,
    assigned_at: String,
}

/// Upsert every assigned lead not yet written back into the configured table, then
/// mark them. `Ok(None)` when no write-back is configured; else how many were written.
pub async fn write_back(app: &App) -> Result<Option<usize>> {
    let Some(wb) = &app.config.leads.writeback else {
        return Ok(None);
    };
    let rows = sqlx::query(
        "SELECT lead_id, operator_id, rule, assigned_at FROM lead_assignments \
         WHERE operator_id IS NOT NULL AND written_back_at IS NULL ORDER BY lead_id",
    )
    .fetch_all(&app.db.pool)
    .await
    .context("reading the assignments to write back")?;
    let pending: Vec<Pending> = rows
        .iter()
        .map(|r| {
            Ok(Pending {
                lead_id: r.try_get(0)?,
                operator_id: r.try_get(1)?,
                rule: r.try_get(2)?,
                assigned_at: r.try_get(3)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .context("decoding lead_assignments")?;
    if pending.is_empty() {
        return Ok(Some(0));
    }
    upsert(wb, &pending).await.with_context(|| {
        format!(
            "writing {} lead assignment(s) back to {} at {}",
            pending.len(),
            wb.table,
            wb.display_url()
        )
    })?;
    // Marked only after the CRM committed; a crash in between writes them again.
    let mut tx = app.db.begin_write().await?;
    for chunk in pending.chunks(ROWS_PER_INSERT) {
        let marks = (0..chunk.len())
            .map(|i| format!("${}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE lead_assignments SET written_back_at = $1 WHERE operator_id IS NOT NULL AND lead_id IN ({marks})"
        );
        let mut q = sqlx::query(&sql)
            .persistent(false)
            .bind(db::timestamp(Utc::now()));
        for p in chunk {
            q = q.bind(p.lead_id.clone());
        }
        q.execute(&mut *tx)
            .await
            .context("marking the assignments written back")?;
    }
    tx.commit()
        .await
        .context("marking the assignments written back")?;
    Ok(Some(pending.len()))
}

/// The CRM side: check the table, then upsert `rows` in one transaction.
async fn upsert(wb: &Writeback, rows: &[Pending]) -> Result<()> {
    // Validated with the config; checked again because the name is spliced into SQL.
    if !is_table_name(&wb.table) {
        bail!("{:?} is not a plain table name", wb.table);
    }
    let url = wb.resolve_url().map_err(|e| anyhow!(e))?;
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(&url)
        .await
        .map_err(|e| anyhow!("cannot connect: {}", db::redact(&e.to_string())))?;
    let casts = column_casts(&mut conn, &wb.table).await?;
    let positional = conn.backend_name() == "SQLite";
    let mut tx = conn.begin().await.context("begin")?;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = format!("INSERT INTO {} ({}) VALUES ", wb.table, COLUMNS.join(", "));
        for i in 0..chunk.len() {
            sql.push_str(if i == 0 { "(" } else { ", (" });
            for (c, cast) in casts.iter().enumerate() {
                if c > 0 {
                    sql.push_str(", ");
                }
                let mark = if positional {
                    "?".to_string()
                } else {
                    format!("${}", i * COLUMNS.len() + c + 1)
                };
                match cast {
                    Some(t) => sql.push_str(&format!("CAST({mark} AS {t})")),
                    None => sql.push_str(&mark),
                }
            }
            sql.push(')');
        }
        sql.push_str(
            " ON CONFLICT (lead_id) DO UPDATE SET operator_id = excluded.operator_id, \
             rule = excluded.rule, assigned_at = excluded.assigned_at",
        );
        let mut q = sqlx::query(&sql).persistent(false);
        for p in chunk {
            q = q
                .bind(p.lead_id.clone())
                .bind(p.operator_id.clone())
                .bind(p.rule.clone())
                .bind(p.assigned_at.clone());
        }
        q.execute(&mut *tx).await.map_err(|e| {
            let hint = if e.to_string().contains("ON CONFLICT") {
                " (the table needs a unique key on lead_id)"
            } else {
                ""
            };
            anyhow!("upsert: {e}{hint}")
        })?;
    }
    tx.commit().await.context("commit")?;
    Ok(())
}

/// Per written column, the cast its value needs (`None`: bound as text). Fails,
/// naming the table, when the table or a column is missing or a column has a type
/// opnet does not write.
async fn column_casts(conn: &mut AnyConnection, table: &str) -> Result<Vec<Option<&'static str>>> {
    let (schema, name) = match table.split_once('.') {
        Some((s, n)) => (Some(s), n),
        None => (None, table),
    };
    let found: Vec<(String, String)> = if conn.backend_name() == "SQLite" {
        let sql = match schema {
            Some(_) => "SELECT name, type FROM pragma_table_info($1, $2)",
            None => "SELECT name, type FROM pragma_table_info($1)",
        };
        let mut q = sqlx::query(sql).bind(name.to_string());
        if let Some(s) = schema {
            q = q.bind(s.to_string());
        }
        q.fetch_all(&mut *conn)
            .await
            .context("reading the table's columns")?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?
    } else {
        let sql = match schema {
            Some(_) => {
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_name = $1 AND table_schema = $2"
            }
            None => {
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_name = $1 AND table_schema = current_schema()"
            }
        };
        let mut q = sqlx::query(sql).bind(name.to_string());
        if let Some(s) = schema {
            q = q.bind(s.to_string());
        }
        q.fetch_all(&mut *conn)
            .await
            .context("reading the table's columns")?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?
    };
    if found.is_empty() {
        bail!(
            "table {table} does not exist; create it in the CRM's database, e.g. CREATE TABLE {table} \
             (lead_id text PRIMARY KEY, operator_id text NOT NULL, rule text NOT NULL, assigned_at timestamptz NOT NULL)"
        );
    }
    let sqlite = conn.backend_name() == "SQLite";
    COLUMNS
        .iter()
        .map(|c| {
            let Some((_, ty)) = found.iter().find(|(n, _)| n.eq_ignore_ascii_case(c)) else {
                bail!("table {table} has no column {c}");
            };
            if sqlite {
                return Ok(None);
            }
            match ty.to_ascii_lowercase().as_str() {
                "text" | "character varying" | "character" => Ok(None),
                "timestamp with time zone" if *c == "assigned_at" => Ok(Some("timestamptz")),
                "timestamp without time zone" if *c == "assigned_at" => Ok(Some("timestamp")),
                other => bail!(
                    "column {table}.{c} is {other}; expected text or varchar{}",
                    if *c == "assigned_at" {
                        ", or a timestamp with or without time zone"
                    } else {
                        ""
                    }
                ),
            }
        })
        .collect()
}
