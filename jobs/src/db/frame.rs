//! Result tables between Polars and the database: a `DataFrame` written as
//! multi-row `INSERT`s, a query read back into a `DataFrame`, and a job's declared
//! result table ([`TableSpec`]) read back as its mart.

use polars::prelude::*;
use sqlx::{AnyConnection, Row};

use super::DbError;

/// A constant value added to every row a frame writes (e.g. `run_id`).
#[derive(Clone, Debug)]
pub enum Value {
    Text(String),
    Int(i64),
}

#[derive(Clone, Copy)]
enum Cell<'a> {
    I(Option<i64>),
    F(Option<f64>),
    B(Option<bool>),
    S(Option<&'a str>),
}

/// A normalised column ([`insert_frame`]) as its typed array, looked up once per
/// frame instead of once per cell.
enum Typed<'a> {
    I(&'a Int64Chunked),
    F(&'a Float64Chunked),
    B(&'a BooleanChunked),
    S(&'a StringChunked),
}

impl Cell<'_> {
    /// The very same value: floats by their bits, so 0.0 and −0.0 (equal as numbers)
    /// are two values, and a NaN is one.
    fn same(&self, other: &Cell<'_>) -> bool {
        match (self, other) {
            (Cell::I(a), Cell::I(b)) => a == b,
            (Cell::F(a), Cell::F(b)) => a.map(f64::to_bits) == b.map(f64::to_bits),
            (Cell::B(a), Cell::B(b)) => a == b,
            (Cell::S(a), Cell::S(b)) => a == b,
            _ => false,
        }
    }
}

impl<'a> Typed<'a> {
    fn of(s: &'a Series) -> PolarsResult<Typed<'a>> {
        Ok(match s.dtype() {
            DataType::Int64 => Typed::I(s.i64()?),
            DataType::Float64 => Typed::F(s.f64()?),
            DataType::Boolean => Typed::B(s.bool()?),
            _ => Typed::S(s.str()?),
        })
    }

    fn cell(&self, row: usize) -> Cell<'a> {
        match self {
            Typed::I(a) => Cell::I(a.get(row)),
            Typed::F(a) => Cell::F(a.get(row)),
            Typed::B(a) => Cell::B(a.get(row)),
            Typed::S(a) => Cell::S(a.get(row)),
        }
    }
}

/// Insert every row of `df` into `table` (columns by name), plus `extra` constant
/// columns, in multi-row statements of at most ~30 000 parameters (under both
/// PostgreSQL's 65 535 and SQLite's 32 766 limits).
pub async fn insert_frame(
    conn: &mut AnyConnection,
    table: &str,
    df: &DataFrame,
    extra: &[(&str, Value)],
) -> Result<u64, DbError> {
    if df.height() == 0 {
        return Ok(0);
    }
    let frame_err = |source| DbError::Frame {
        table: table.to_string(),
        source,
    };
    // Normalise the dtypes the database does not know: dates become ISO text,
    // narrow ints widen, all-null columns are typed as text.
    let mut cols: Vec<Series> = Vec::with_capacity(df.width());
    for c in df.columns() {
        let s = c.as_materialized_series().clone();
        let s = match s.dtype() {
            DataType::Date | DataType::Datetime(_, _) | DataType::Null => {
                s.cast(&DataType::String).map_err(frame_err)?
            }
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64 => s.cast(&DataType::Int64).map_err(frame_err)?,
            DataType::Float32 => s.cast(&DataType::Float64).map_err(frame_err)?,
            DataType::Int64 | DataType::Float64 | DataType::Boolean | DataType::String => s,
            other => {
                return Err(DbError::Unsupported {
                    table: table.to_string(),
                    column: c.name().to_string(),
                    dtype: other.to_string(),
                });
            }
        };
        // One contiguous array per column, so a row's cell is found without a search
        // through chunks.
        cols.push(s.rechunk());
    }
    // Looked up once, not per cell; text is bound borrowed, not copied per cell.
    let typed: Vec<Typed> = cols
        .iter()
        .map(Typed::of)
        .collect::<PolarsResult<_>>()
        .map_err(frame_err)?;
    let names: Vec<String> = cols
        .iter()
        .map(|s| s.name().to_string())
        .chain(extra.iter().map(|(n, _)| n.to_string()))
        .collect();
    if conn.backend_name() == "PostgreSQL" && cols.iter().all(finite) {
        return insert_json_rows(conn, table, &cols, &typed, extra, &names).await;
    }
    let width = names.len();
    // SQLite treats `$N` as a *named* parameter and resolves each name by a linear
    // search while parsing: O(n²) for a 30 000-parameter statement (36 s for 23 000
    // payout lines). Anonymous `?` placeholders bind by position in O(n).
    let positional = conn.backend_name() == "SQLite";
    // SQLite: a column holding one value on every row (the period, a revision) is
    // bound once per statement, like the `extra` constants, instead of once per row
    // (issue 13: binding is most of what an insert costs through sqlx); the rows
    // come from a `VALUES` list the statement selects from. Same rows, same values.
    let constant: Vec<bool> = typed
        .iter()
        .map(|t| {
            positional && df.height() > 1 && (1..df.height()).all(|r| t.cell(r).same(&t.cell(0)))
        })
        .collect();
    let hoist = positional && constant.iter().any(|c| !c);
    let (varying, fixed): (Vec<usize>, Vec<usize>) =
        (0..typed.len()).partition(|&i| !(hoist && constant[i]));
    let mut written = 0u64;
    let mut start = 0usize;
    while start < df.height() {
        let end = start + chunk_rows(df.height() - start, width, positional);
        let sql = if hoist {
            let mut sql = format!(
                "INSERT INTO {table} ({}) SELECT ",
                varying
                    .iter()
                    .chain(&fixed)
                    .map(|&i| names[i].as_str())
                    .chain(extra.iter().map(|(n, _)| *n))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let select: Vec<String> = (1..=varying.len())
                .map(|k| format!("column{k}"))
                .chain((0..fixed.len() + extra.len()).map(|_| "?".to_string()))
                .collect();
            sql.push_str(&select.join(", "));
            sql.push_str(" FROM (VALUES ");
            push_value_rows(&mut sql, end - start, varying.len(), positional);
            sql.push(')');
            sql
        } else {
            let mut sql = format!("INSERT INTO {table} ({}) VALUES ", names.join(", "));
            push_value_rows(&mut sql, end - start, width, positional);
            sql
        };
        // Not cached on PostgreSQL: a cached statement keeps the parameter types of its
        // first execution, and a column that was all NULL then (typed by sqlx's guess)
        // would reject real values later ("incorrect binary data format"). SQLite types
        // each value as it is bound, so there every chunk's statement is prepared once
        // per connection, table and shape ([`chunk_rows`] keeps the shapes few), not
        // parsed again for every chunk (issue 13).
        let mut q = sqlx::query(&sql).persistent(positional);
        if hoist {
            // Positional parameters bind in the order of the text: the selected
            // constants come before the `VALUES` rows.
            for &i in &fixed {
                q = bind(q, typed[i].cell(0));
            }
            for (_, v) in extra {
                q = bind_value(q, v);
            }
            for row in start..end {
                for &i in &varying {
                    q = bind(q, typed[i].cell(row));
                }
            }
        } else {
            for row in start..end {
                for c in &typed {
                    q = bind(q, c.cell(row));
                }
                for (_, v) in extra {
                    q = bind_value(q, v);
                }
            }
        }
        let res = q
            .execute(&mut *conn)
            .await
            .map_err(write_err(table, &cols))?;
        written += res.rows_affected();
        start = end;
    }
    Ok(written)
}

/// Rows of SQLite's full statements ([`chunk_rows`]).
const SQLITE_ROWS_PER_STMT: usize = 256;

/// How many of the `remaining` rows of a frame the next `INSERT` takes.
///
/// SQLite (`positional`): [`SQLITE_ROWS_PER_STMT`] rows while that many remain, then
/// the largest power of two that fits, so a frame of any height needs at most nine
/// statement shapes, all kept prepared in the connection's cache (issue 13: parsing
/// the 2 000-row last chunk of each frame anew cost more than binding it, and a
/// statement of a few hundred rows executes as fast as one of thousands). PostgreSQL
/// (the multi-row `VALUES` fallback for frames with NaN): as many rows as ~30 000
/// parameters allow.
fn chunk_rows(remaining: usize, width: usize, positional: bool) -> usize {
    let most = (30_000 / width.max(1)).max(1);
    if !positional {
        return remaining.min(most);
    }
    let full = SQLITE_ROWS_PER_STMT.min(most);
    if remaining >= full {
        full
    } else {
        // remaining ≥ 1 here: the largest power of two not above it.
        1 << remaining.ilog2()
    }
}

/// No NaN or infinity in a float column (JSON has no spelling for them).
fn finite(s: &Series) -> bool {
    match s.f64() {
        Ok(ca) => ca.iter().flatten().all(f64::is_finite),
        Err(_) => true,
    }
}

/// Rows per statement of [`insert_json_rows`]: bounds the JSON text held at once.
const JSON_ROWS_PER_STMT: usize = 20_000;

/// PostgreSQL: the rows as one JSON array parameter, expanded server-side by
/// `json_populate_recordset` into the table's own column types (issue 13). A
/// 30 000-parameter `INSERT … VALUES` costs PostgreSQL far more to parse and bind
/// than one text parameter does to decode; `COPY` is not reachable through sqlx's
/// `Any` connection. Values are written exactly: integers and text as they are,
/// floats in their shortest round-trip form (finite only; the caller checks).
async fn insert_json_rows(
    conn: &mut AnyConnection,
    table: &str,
    cols: &[Series],
    typed: &[Typed<'_>],
    extra: &[(&str, Value)],
    names: &[String],
) -> Result<u64, DbError> {
    let height = cols.first().map(|s| s.len()).unwrap_or(0);
    // Each column's key, JSON-escaped once.
    let keys: Vec<String> = names
        .iter()
        .map(|n| serde_json::to_string(n).unwrap_or_else(|_| format!("\"{n}\"")))
        .collect();
    let constants: Vec<String> = extra
        .iter()
        .map(|(_, v)| match v {
            Value::Text(t) => serde_json::to_string(t).unwrap_or_default(),
            Value::Int(i) => i.to_string(),
        })
        .collect();
    let sql = format!(
        "INSERT INTO {table} ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{table}, $1::json)",
        cols = names.join(", ")
    );
    let mut written = 0u64;
    let mut start = 0usize;
    while start < height {
        let end = (start + JSON_ROWS_PER_STMT).min(height);
        let mut json = String::with_capacity((end - start) * 32 * names.len());
        json.push('[');
        for row in start..end {
            json.push_str(if row == start { "{" } else { ",{" });
            for (c, t) in typed.iter().enumerate() {
                if c > 0 {
                    json.push(',');
                }
                json.push_str(&keys[c]);
                json.push(':');
                match t.cell(row) {
                    Cell::I(v) => push_or_null(&mut json, v, |j, v| j.push_str(&v.to_string())),
                    Cell::F(v) => push_or_null(&mut json, v, |j, v| {
                        j.push_str(&serde_json::to_string(&v).unwrap_or_else(|_| "null".into()))
                    }),
                    Cell::B(v) => push_or_null(&mut json, v, |j, v| {
                        j.push_str(if v { "true" } else { "false" })
                    }),
                    Cell::S(v) => push_or_null(&mut json, v, |j, v| {
                        j.push_str(&serde_json::to_string(v).unwrap_or_else(|_| "null".into()))
                    }),
                }
            }
            for (i, constant) in constants.iter().enumerate() {
                json.push(',');
                json.push_str(&keys[cols.len() + i]);
                json.push(':');
                json.push_str(constant);
            }
            json.push('}');
        }
        json.push(']');
        let res = sqlx::query(&sql)
            .persistent(false)
            .bind(json)
            .execute(&mut *conn)
            .await
            .map_err(write_err(table, cols))?;
        written += res.rows_affected();
        start = end;
    }
    Ok(written)
}

fn push_or_null<T>(json: &mut String, v: Option<T>, write: impl FnOnce(&mut String, T)) {
    match v {
        Some(v) => write(json, v),
        None => json.push_str("null"),
    }
}

/// `(?, ?, …), (…)` — `rows` rows of `width` placeholders each, positional `?` (SQLite:
/// `$N` is a named parameter there, resolved by a linear search per name) or
/// numbered `$1, $2, …` (PostgreSQL).
pub fn push_value_rows(sql: &mut String, rows: usize, width: usize, positional: bool) {
    let mut n = 0usize;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            n += 1;
            if c > 0 {
                sql.push_str(", ");
            }
            if positional {
                sql.push('?');
            } else {
                sql.push('$');
                sql.push_str(&n.to_string());
            }
        }
        sql.push(')');
    }
}

/// A failed write of `cols` into `table`, naming each column's type.
fn write_err(table: &str, cols: &[Series]) -> impl FnOnce(sqlx::Error) -> DbError {
    let table = format!(
        "{table} ({})",
        cols.iter()
            .map(|s| format!("{}: {}", s.name(), s.dtype()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    move |source| DbError::Write { table, source }
}

fn bind<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    cell: Cell<'q>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    match cell {
        Cell::I(v) => q.bind(v),
        Cell::F(v) => q.bind(v),
        Cell::B(v) => q.bind(v),
        Cell::S(v) => q.bind(v),
    }
}

/// A constant (`run_id` on every row, a query's parameter), bound borrowed.
fn bind_value<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    value: &'q Value,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    match value {
        Value::Text(s) => q.bind(s.as_str()),
        Value::Int(i) => q.bind(*i),
    }
}

/// A boolean column as 1/0/NULL: the Any driver cannot decode SQLite's BOOLEAN, so
/// queries select booleans through this and [`query_frame`] turns them back.
pub fn bool_as_int(column: &str) -> String {
    format!("CASE WHEN {column} IS NULL THEN NULL WHEN {column} THEN 1 ELSE 0 END AS {column}")
}

/// Read a query's rows into a `DataFrame`; `columns` gives each output column's
/// name and type (Int64, Float64, Boolean or String), in select order.
pub async fn query_frame(
    conn: &mut AnyConnection,
    sql: &str,
    binds: &[Value],
    columns: &[(&str, DataType)],
) -> Result<DataFrame, DbError> {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = bind_value(q, b);
    }
    let rows = q
        .fetch_all(&mut *conn)
        .await
        .map_err(DbError::query(format!("query {sql}")))?;
    let mut out = Vec::with_capacity(columns.len());
    for (i, (name, dtype)) in columns.iter().enumerate() {
        let ctx = || format!("column {name} of {sql}");
        let name: PlSmallStr = (*name).into();
        let s = match dtype {
            DataType::Int64 => Series::new(
                name,
                decode::<i64>(&rows, i).map_err(DbError::query(ctx()))?,
            ),
            DataType::Float64 => Series::new(
                name,
                decode::<f64>(&rows, i).map_err(DbError::query(ctx()))?,
            ),
            // selected through `bool_as_int`
            DataType::Boolean => Series::new(
                name,
                decode::<i64>(&rows, i)
                    .map_err(DbError::query(ctx()))?
                    .into_iter()
                    .map(|b| b.map(|b| b != 0))
                    .collect::<Vec<_>>(),
            ),
            _ => Series::new(
                name,
                decode::<String>(&rows, i).map_err(DbError::query(ctx()))?,
            ),
        };
        out.push(s.into_column());
    }
    DataFrame::new(rows.len(), out).map_err(|source| DbError::Frame {
        table: sql.to_string(),
        source,
    })
}

/// Column `i` of every row, NULL as `None`.
fn decode<'r, T>(rows: &'r [sqlx::any::AnyRow], i: usize) -> Result<Vec<Option<T>>, sqlx::Error>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    rows.iter().map(|r| r.try_get(i)).collect()
}

/// A result table as a job declares it: its name, every column with the Polars type
/// it is published with (`marts/<table>/period=…`), and the order of its rows. The job
/// owns this (jobs/src/jobs/<job>/mod.rs); the registry test checks it against the
/// migrated schema.
#[derive(Debug)]
pub struct TableSpec {
    pub table: &'static str,
    pub columns: &'static [(&'static str, DataType)],
    pub order_by: &'static str,
    /// Rows are updated after the run that wrote them (statement status, R1.8), so the
    /// mart is always read back from the database; otherwise a run that wrote the
    /// period's rows whole publishes them from its own frame ([`written_frame`]).
    pub changes_after_run: bool,
}

/// The mart of `spec` for a period from the frame a run has just committed as the
/// period's whole content of the table — the same rows, columns, types and order
/// [`period_frame`] reads back, without the round trip (issue 13: reading the rows
/// back was a fifth of a backfill). Order: `order_by`, nulls first as SQLite sorts
/// them, ties in the frame's order.
pub fn written_frame(
    spec: &TableSpec,
    frame: &DataFrame,
    run_id: &str,
) -> Result<DataFrame, DbError> {
    let frame_err = |source| DbError::Frame {
        table: spec.table.to_string(),
        source,
    };
    let select: Vec<Expr> = spec
        .columns
        .iter()
        .map(|(c, t)| {
            if *c == "run_id" && frame.column(c).is_err() {
                lit(run_id.to_string()).alias(*c)
            } else {
                col(*c).strict_cast(t.clone())
            }
        })
        .collect();
    let keys: Vec<PlSmallStr> = spec
        .order_by
        .split(',')
        .map(|k| PlSmallStr::from(k.trim()))
        .collect();
    frame
        .clone()
        .lazy()
        .select(select)
        .sort(
            keys,
            SortMultipleOptions::default()
                .with_nulls_last(false)
                .with_maintain_order(true),
        )
        .collect()
        .map_err(frame_err)
}

/// The rows of result table `spec` for `period`, as its mart: exactly what the
/// database holds (issue 9 item 13: a mart is published from committed rows only).
pub async fn period_frame(
    conn: &mut AnyConnection,
    spec: &TableSpec,
    period: &str,
) -> Result<DataFrame, DbError> {
    let table = spec.table;
    let select: Vec<String> = spec
        .columns
        .iter()
        .map(|(c, t)| match t {
            DataType::Boolean => bool_as_int(c),
            _ => c.to_string(),
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM {} WHERE period = $1 ORDER BY {}",
        select.join(", "),
        spec.table,
        spec.order_by
    );
    // Read as the database types (dates are text, integers 64-bit), then cast.
    let read: Vec<(&str, DataType)> = spec
        .columns
        .iter()
        .map(|(c, t)| {
            let t = match t {
                DataType::Date => DataType::String,
                DataType::Int32 => DataType::Int64,
                other => other.clone(),
            };
            (*c, t)
        })
        .collect();
    let df = query_frame(conn, &sql, &[Value::Text(period.to_string())], &read).await?;
    let frame_err = |source| DbError::Frame {
        table: table.to_string(),
        source,
    };
    let casts: Vec<Expr> = spec
        .columns
        .iter()
        .map(|(c, t)| match t {
            // Dates are stored as ISO text: parse them as such, strictly.
            DataType::Date => col(*c).str().to_date(StrptimeOptions {
                format: Some("%Y-%m-%d".into()),
                strict: true,
                exact: true,
                cache: false,
            }),
            other => col(*c).strict_cast(other.clone()),
        })
        .collect();
    df.lazy().select(casts).collect().map_err(frame_err)
}
