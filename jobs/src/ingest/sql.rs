//! SQL-query sources (`[sources."<system>/<name>"]` in the config): run a dataset's
//! query once per ingest on a read-only connection, every contract column cast to
//! text, so that its rows go through the same validation as a file's. An optional
//! contract column ([`Dataset::optional_columns`]) is read when the query yields it
//! and left out when it does not. Also the canonical serialisation of the rows that
//! the fingerprint hashes. The behaviour is described in the module documentation of
//! [`super`].

use std::collections::BTreeMap;

use opnet_pipelines::contract::{ColType, Column, Dataset};
use polars::prelude::*;
use tracing::info;

use super::IngestError;
use crate::config::SqlSource;

/// Rows of a SQL source: its [`SqlRows::columns`] in order, as text (`None` = NULL).
pub(super) type TextRows = Vec<Vec<Option<String>>>;

/// What a SQL source gave.
pub(super) struct SqlRows {
    /// `sql:<url, credentials masked>#<dataset>`
    pub(super) label: String,
    /// The dataset's required columns, then the optional ones the query yields.
    pub(super) columns: Vec<&'static Column>,
    pub(super) rows: TextRows,
}

/// Run `src`'s query for `dataset`: its label, the columns read and the rows.
pub(super) async fn read_sql(
    dataset: &'static Dataset,
    src: &SqlSource,
    conns: &mut BTreeMap<String, sqlx::AnyConnection>,
) -> Result<SqlRows, IngestError> {
    use sqlx::Row;
    let path = dataset.path();
    let label = format!("sql:{}#{path}", src.display_url());
    let fail = |reason: String| IngestError::Sql {
        dataset: path.clone(),
        source_name: label.clone(),
        reason,
    };
    let url = src.resolve_url().map_err(fail)?;
    let backend = crate::db::backend_of(&url).map_err(|e| fail(e.to_string()))?;
    if !conns.contains_key(&url) {
        conns.insert(
            url.clone(),
            connect_read_only(&url, backend).await.map_err(fail)?,
        );
    }
    let Some(conn) = conns.get_mut(&url) else {
        return Err(fail("connection lost".into()));
    };
    // A trailing `;` would end the subquery early.
    let query = src.query.trim().trim_end_matches(';').trim_end();
    let mut columns: Vec<&'static Column> = dataset.columns.iter().collect();
    for c in dataset.optional_columns {
        if has_column(&mut *conn, query, c.name).await.map_err(fail)? {
            columns.push(c);
        }
    }
    let sql = wrap_query(&columns, query, backend);
    let rows = match sqlx::query(&sql).fetch_all(&mut *conn).await {
        Ok(rows) => rows,
        Err(e) => {
            // Tell a missing column from any other failure: when the query itself
            // runs, the columns that cannot be selected from it are the missing ones.
            let probe = |col: Option<&str>| match col {
                Some(c) => format!("SELECT q.{} FROM ({query}) q LIMIT 0", quote_ident(c)),
                None => format!("SELECT 1 FROM ({query}) q LIMIT 0"),
            };
            if sqlx::query(&probe(None))
                .fetch_all(&mut *conn)
                .await
                .is_ok()
            {
                let mut missing = Vec::new();
                for c in dataset.columns {
                    if sqlx::query(&probe(Some(c.name)))
                        .fetch_all(&mut *conn)
                        .await
                        .is_err()
                    {
                        missing.push(c.name);
                    }
                }
                if !missing.is_empty() {
                    return Err(IngestError::SqlMissingColumn {
                        dataset: path.clone(),
                        source_name: label.clone(),
                        column: missing.join(", "),
                    });
                }
            }
            return Err(fail(format!("query failed: {e}")));
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let mut values = Vec::with_capacity(columns.len());
        for (j, c) in columns.iter().enumerate() {
            let v: Option<String> = row
                .try_get(j)
                .map_err(|e| fail(format!("row {}, column {}: {e}", i + 1, c.name)))?;
            values.push(v);
        }
        out.push(values);
    }
    info!(dataset = %path, source = %label, rows = out.len(), columns = columns.len(), "read SQL source");
    Ok(SqlRows {
        label,
        columns,
        rows: out,
    })
}

/// Whether the result of `query` has a column `name`: selecting it works. When it
/// does not, the query alone must run, so that only a truly absent column reads as
/// absent (a broken query or a lost connection is an error, never "no column").
async fn has_column(
    conn: &mut sqlx::AnyConnection,
    query: &str,
    name: &str,
) -> Result<bool, String> {
    let probe = format!("SELECT q.{} FROM ({query}) q LIMIT 0", quote_ident(name));
    if sqlx::query(&probe).fetch_all(&mut *conn).await.is_ok() {
        return Ok(true);
    }
    match sqlx::query(&format!("SELECT 1 FROM ({query}) q LIMIT 0"))
        .fetch_all(&mut *conn)
        .await
    {
        Ok(_) => Ok(false),
        Err(e) => Err(format!("query failed: {e}")),
    }
}

/// A connection for reading only: PostgreSQL sessions read-only, UTC and ISO dates;
/// SQLite files opened read-only (never created).
async fn connect_read_only(
    url: &str,
    backend: crate::db::Backend,
) -> Result<sqlx::AnyConnection, String> {
    sqlx::any::install_default_drivers();
    let url = match backend {
        crate::db::Backend::Sqlite if !url.contains("mode=") => {
            format!("{url}{}mode=ro", if url.contains('?') { '&' } else { '?' })
        }
        _ => url.to_string(),
    };
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    if backend == crate::db::Backend::Postgres {
        for set in [
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "SET DateStyle = 'ISO, YMD'",
            "SET TIME ZONE 'UTC'",
        ] {
            sqlx::query(set)
                .execute(&mut conn)
                .await
                .map_err(|e| format!("{set}: {e}"))?;
        }
    }
    Ok(conn)
}

/// `"name"`, doubling any quote inside.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The user's query wrapped so that every column of `columns` comes back as text.
fn wrap_query(columns: &[&Column], query: &str, backend: crate::db::Backend) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|c| {
            let q = format!("q.{}", quote_ident(c.name));
            let text = format!("CAST({q} AS TEXT)");
            let expr = match (backend, c.ty) {
                // `timestamptz::text` is `2025-08-01 10:00:00+00`, not RFC 3339. The
                // CASE keeps text columns as they are (validation judges them).
                (crate::db::Backend::Postgres, ColType::Ts) => format!(
                    "CASE WHEN pg_typeof({q}) IN ('timestamp with time zone'::regtype, 'timestamp without time zone'::regtype) \
                     THEN to_char(CAST({text} AS timestamp with time zone) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
                     ELSE {text} END"
                ),
                // SQLite has no boolean type: 0/1 integers are its usual spelling.
                (crate::db::Backend::Sqlite, ColType::Bool) => format!(
                    "CASE WHEN typeof({q}) = 'integer' AND {q} IN (0, 1) \
                     THEN (CASE WHEN {q} = 1 THEN 'true' ELSE 'false' END) ELSE {text} END"
                ),
                _ => text,
            };
            format!("{expr} AS {}", quote_ident(c.name))
        })
        .collect();
    format!("SELECT {} FROM ({query}) q", cols.join(", "))
}

/// What the fingerprint hashes for SQL rows: a tag, the column names (so that a query
/// that starts or stops yielding an optional column is a new source), the row count,
/// then per value a null marker or its length-prefixed bytes, in result order.
pub(super) fn canonical_rows(columns: &[&Column], rows: &TextRows) -> Vec<u8> {
    let mut out = b"opnet-sql-rows-v2\0".to_vec();
    out.extend((columns.len() as u64).to_le_bytes());
    for c in columns {
        out.extend((c.name.len() as u64).to_le_bytes());
        out.extend(c.name.as_bytes());
    }
    out.extend((rows.len() as u64).to_le_bytes());
    for row in rows {
        out.extend((row.len() as u64).to_le_bytes());
        for v in row {
            match v {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    out.extend((v.len() as u64).to_le_bytes());
                    out.extend(v.as_bytes());
                }
            }
        }
    }
    out
}

/// SQL rows as a frame of `columns`, all text, ready for
/// [`validate`](fn@super::validate).
pub(super) fn rows_frame(columns: &[&Column], rows: &TextRows) -> PolarsResult<DataFrame> {
    let n = rows.len();
    let cols = columns
        .iter()
        .enumerate()
        .map(|(j, c)| {
            StringChunked::from_iter_options(
                c.name.into(),
                rows.iter().map(|r| r.get(j).and_then(|v| v.as_deref())),
            )
            .into_column()
        })
        .collect();
    DataFrame::new(n, cols)
}
