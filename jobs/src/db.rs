//! The results database: PostgreSQL in production, SQLite as the embedded default,
//! both through sqlx's `Any` driver so every query is written once.
//!
//! This module owns the schema migrations (`sql/<backend>/*.sql`, embedded in the
//! binary), the run ledger (`job_runs`) and a bulk writer that turns a Polars
//! `DataFrame` into multi-row `INSERT`s, so a job's results go in with few round trips
//! inside the same transaction as its ledger row.
//!
//! SQLite is made safe for several processes on one file (issue 9, item 14): every
//! connection runs in WAL mode with a busy timeout (set when it connects: the URL
//! cannot carry either), writers open their transactions with `BEGIN IMMEDIATE`
//! ([`Db::begin_write`]) so a read-then-write transaction never fails on a lock
//! upgrade, migrations run under the write lock, and "database is locked" counts as
//! transient ([`is_transient_sqlx`]), never as a failed run.

use chrono::{DateTime, SecondsFormat, Utc};
use polars::prelude::*;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Row};
use std::str::FromStr;
use std::time::Duration;

use crate::retry::{self, Backoff};

/// How long the pool waits for a connection (sqlx's default, kept for every later
/// `acquire` too); while connecting, refused connections are retried within it.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long an SQLite connection waits for another process's write lock before it
/// reports "database is locked" (which is then retried as transient). Longer than any
/// single write transaction of a close on the embedded database.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which database a URL points at; the few dialect differences key off this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Errors of the database layer; each names what it was doing.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database URL {0:?}: expected postgres://… or sqlite://…")]
    BadUrl(String),
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("migration {version} failed: {source}")]
    Migrate {
        version: String,
        source: sqlx::Error,
    },
    #[error("writing table {table}: {source}")]
    Write { table: String, source: sqlx::Error },
    #[error("table {table}, column {column}: unsupported type {dtype} for the database")]
    Unsupported {
        table: String,
        column: String,
        dtype: String,
    },
    #[error("table {table}: {source}")]
    Frame { table: String, source: PolarsError },
    #[error("{context}: {source}")]
    Query {
        context: String,
        source: sqlx::Error,
    },
    /// The run's ledger row is no longer `running` (another scheduler took the lease
    /// over and marked it interrupted): its results must not commit.
    #[error(
        "run {run_id} is no longer running (marked interrupted by the scheduler that took over the lease); rolled back"
    )]
    RunNotRunning { run_id: String },
}

impl DbError {
    pub fn query(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> DbError {
        let context = context.into();
        move |source| DbError::Query { context, source }
    }

    /// Connection-level failures and lock contention are worth a retry; constraint or
    /// syntax errors are not (see [`is_transient_sqlx`]).
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Connect { source, .. }
            | DbError::Write { source, .. }
            | DbError::Query { source, .. }
            | DbError::Migrate { source, .. } => is_transient_sqlx(source),
            _ => false,
        }
    }
}

/// Whether a database error goes away by itself: the connection (I/O, pool timeout
/// or closed), lock contention — SQLite `SQLITE_BUSY`/`SQLITE_LOCKED` ("database is
/// locked", any extended code), PostgreSQL serialization failures, deadlocks and
/// lock timeouts — and a PostgreSQL server that is shutting down or starting. The one
/// definition every layer asks (db, outbox, the close's run retry).
pub fn is_transient_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            // SQLite reports its (extended) result code as a number: the low byte is
            // the primary code, 5 = BUSY, 6 = LOCKED.
            if let Ok(n) = code.parse::<i64>() {
                return matches!(n & 0xff, 5 | 6);
            }
            matches!(
                code,
                "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03"
            ) || db.message().contains("database is locked")
        }
        _ => false,
    }
}

// The embedded migrations, discovered from `sql/` at build time (`jobs/build.rs`):
// `MIGRATIONS: &[(version, PostgreSQL script, SQLite script)]`, in version order.
include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// A connection pool and the backend behind it.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

impl Db {
    /// Connect, creating an SQLite file (and its folder) when it does not exist yet.
    ///
    /// A transient failure (I/O, pool timeout) is retried with [`retry::DB_CONNECT`], so a
    /// database that is restarting or not up yet does not fail a cron run; a bad URL or
    /// a refused login fails at once.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        Self::connect_with_policy(url, &retry::DB_CONNECT, ACQUIRE_TIMEOUT).await
    }

    /// [`Db::connect`] with its retry policy and the pool's acquire timeout given (tests
    /// make both small). Within one attempt sqlx itself keeps retrying refused
    /// connections until `acquire_timeout`, then reports `PoolTimedOut`.
    pub async fn connect_with_policy(
        url: &str,
        policy: &Backoff,
        acquire_timeout: Duration,
    ) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url)?;
        let mut url = url.to_string();
        if backend == Backend::Sqlite {
            if let Some(path) = sqlite_path(&url)
                && let Some(dir) = std::path::Path::new(&path).parent()
                && !dir.as_os_str().is_empty()
            {
                let _ = std::fs::create_dir_all(dir);
            }
            if !url.contains("mode=") && !url.contains(":memory:") {
                url.push_str(if url.contains('?') {
                    "&mode=rwc"
                } else {
                    "?mode=rwc"
                });
            }
        }
        let options = AnyConnectOptions::from_str(&url).map_err(|source| DbError::Connect {
            url: redact(&url),
            source,
        })?;
        let redacted = redact(&url);
        let pool = retry::retry(
            policy,
            "database connect",
            DbError::is_transient,
            || async {
                AnyPoolOptions::new()
                    .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
                    .acquire_timeout(acquire_timeout)
                    .after_connect(move |conn, _meta| {
                        Box::pin(async move {
                            if backend == Backend::Sqlite {
                                sqlite_session(conn).await?;
                            }
                            Ok(())
                        })
                    })
                    .connect_with(options.clone())
                    .await
                    .map_err(|source| DbError::Connect {
                        url: redacted.clone(),
                        source,
                    })
            },
        )
        .await?;
        Ok(Db { pool, backend })
    }

    /// A transaction for a writer. On SQLite it is `BEGIN IMMEDIATE`: the write lock
    /// is taken (waiting up to [`SQLITE_BUSY_TIMEOUT`]) before the first read, so a
    /// transaction that reads and then writes cannot fail on the lock upgrade, which
    /// SQLite refuses without waiting when another writer committed in between.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, DbError> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
        .map_err(DbError::query("begin a write transaction"))
    }

    /// Apply the embedded migrations that are not applied yet; returns their versions.
    ///
    /// On PostgreSQL an advisory lock serialises replicas that start at once; on
    /// SQLite the migrations run in one `BEGIN IMMEDIATE` transaction, so two
    /// processes opening a new file at once apply them once (the second waits, then
    /// finds them applied).
    pub async fn migrate(&self) -> Result<Vec<String>, DbError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(DbError::query("acquire connection"))?;
        if self.backend == Backend::Sqlite {
            // Up to date (every start-up but the first): no write lock needed, so a
            // command starting while another process writes does not wait for it.
            let applied: Result<i64, sqlx::Error> =
                sqlx::query_scalar("SELECT COUNT(*) FROM opnet_migrations")
                    .fetch_one(&mut *conn)
                    .await;
            if applied.is_ok_and(|n| n as usize == MIGRATIONS.len()) {
                return Ok(Vec::new());
            }
            let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE")
                .await
                .map_err(DbError::query("migration lock (BEGIN IMMEDIATE)"))?;
            let applied = self.migrate_locked(&mut tx, false).await?;
            tx.commit().await.map_err(|source| DbError::Migrate {
                version: applied.join(", "),
                source,
            })?;
            return Ok(applied);
        }
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_lock(7262730)")
                .execute(&mut *conn)
                .await
                .map_err(DbError::query("migration lock"))?;
        }
        let result = self.migrate_locked(&mut conn, true).await;
        if self.backend == Backend::Postgres {
            let _ = sqlx::query("SELECT pg_advisory_unlock(7262730)")
                .execute(&mut *conn)
                .await;
        }
        result
    }

    /// Apply what is missing; `own_transactions`: each migration in a transaction of
    /// its own (PostgreSQL), else in the caller's (SQLite, already holding the lock).
    async fn migrate_locked(
        &self,
        conn: &mut AnyConnection,
        own_transactions: bool,
    ) -> Result<Vec<String>, DbError> {
        sqlx::query("CREATE TABLE IF NOT EXISTS opnet_migrations (version TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
            .execute(&mut *conn)
            .await
            .map_err(DbError::query("create opnet_migrations"))?;
        let mut applied = Vec::new();
        for (version, pg, lite) in MIGRATIONS {
            let done: Option<String> =
                sqlx::query_scalar("SELECT version FROM opnet_migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(DbError::query("read opnet_migrations"))?;
            if done.is_some() {
                continue;
            }
            let script = if self.backend == Backend::Postgres {
                pg
            } else {
                lite
            };
            let version = version.to_string();
            if own_transactions {
                let mut tx = sqlx::Connection::begin(&mut *conn)
                    .await
                    .map_err(migrate_error(&version))?;
                apply_migration(&mut tx, &version, script)
                    .await
                    .map_err(migrate_error(&version))?;
                tx.commit().await.map_err(migrate_error(&version))?;
            } else {
                apply_migration(&mut *conn, &version, script)
                    .await
                    .map_err(migrate_error(&version))?;
            }
            applied.push(version.to_string());
        }
        Ok(applied)
    }
}

fn migrate_error(version: &str) -> impl FnOnce(sqlx::Error) -> DbError + use<> {
    let version = version.to_string();
    move |source| DbError::Migrate { version, source }
}

async fn apply_migration(
    conn: &mut AnyConnection,
    version: &str,
    script: &str,
) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(script).execute(&mut *conn).await?;
    sqlx::query("INSERT INTO opnet_migrations (version, applied_at) VALUES ($1, $2)")
        .bind(version)
        .bind(timestamp(Utc::now()))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Session settings of every SQLite connection: the busy timeout, and WAL mode, in
/// which readers never block the writer nor it them (so `opnet status` or a
/// deliverer can read while a close writes).
async fn sqlite_session(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "PRAGMA busy_timeout = {}",
        SQLITE_BUSY_TIMEOUT.as_millis()
    ))
    .execute(&mut *conn)
    .await?;
    // WAL is a property of the file, kept once set, so only the first connection to
    // a new file switches it. Switching needs an exclusive lock that SQLite's busy
    // handler does not wait for: two processes opening a new file at once may be
    // told "busy" here, which is retried.
    let mut attempt = 0u32;
    loop {
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await?;
        if matches!(mode.to_ascii_lowercase().as_str(), "wal" | "memory") {
            return Ok(());
        }
        match sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL")
            .fetch_one(&mut *conn)
            .await
        {
            Ok(_) => {}
            Err(e) if is_transient_sqlx(&e) && attempt < 200 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

pub fn backend_of(url: &str) -> Result<Backend, DbError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else {
        Err(DbError::BadUrl(redact(url)))
    }
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

/// A database URL (or a libpq-style `key=value` connection string) with every
/// credential masked as `*****`, safe to print, log, or store in the lake: the
/// password of `user:password@`, and the value of every parameter whose name suggests
/// a secret (`password`, `sslpassword`, `passfile`, `sslkey`, any name containing
/// pass, pwd, secret, token, key, auth, credential or signature, in any case), in a
/// query string or as `key=value` words. A password holding characters a URL must
/// encode (`/`, `?`, `#`, `@`) is masked up to the last `@` of the authority. It may
/// mask more than the password; it never shows less of one.
pub fn redact(url: &str) -> String {
    const MASK: &str = "*****";
    let secret_name = |name: &str| {
        let n = name.to_ascii_lowercase();
        [
            "pass",
            "pwd",
            "secret",
            "token",
            "key",
            "auth",
            "credential",
            "signature",
        ]
        .iter()
        .any(|s| n.contains(s))
    };

    // The password of the authority's `user:password@`.
    let mut masked = url.to_string();
    if let Some(s) = url.find("://") {
        let rest = &url[s + 3..];
        let query = rest.find(['?', '#']).unwrap_or(rest.len());
        let at = match rest[..query].rfind('@') {
            Some(at) => Some(at),
            // No `@` before the query, but a `user:…` authority without a path: the
            // password held a `?` or `#`, so its `@` comes later.
            None if !rest[..query].contains('/') && rest[..query].contains(':') => rest.rfind('@'),
            None => None,
        };
        if let Some(at) = at
            && let Some((user, _)) = rest[..at].split_once(':')
        {
            masked = format!("{}://{user}:{MASK}{}", &url[..s], &rest[at..]);
        }
    }

    // `name=value` pairs (query strings, libpq words) whose name suggests a secret.
    let is_name = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    let text = masked.as_str();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(off) = text[i..].find('=') {
        let eq = i + off;
        let mut start = eq;
        while start > i && is_name(bytes[start - 1]) {
            start -= 1;
        }
        out.push_str(&text[i..=eq]);
        let value = eq + 1;
        let end = if bytes.get(value) == Some(&b'\'') {
            // A quoted libpq value runs to its closing quote.
            text[value + 1..]
                .find('\'')
                .map_or(text.len(), |q| value + 1 + q + 1)
        } else {
            text[value..]
                .find(|c: char| matches!(c, '&' | ';' | '#') || c.is_whitespace())
                .map_or(text.len(), |e| value + e)
        };
        if end > value && secret_name(&text[start..eq]) {
            out.push_str(MASK);
        } else {
            out.push_str(&text[value..end]);
        }
        i = end;
    }
    out.push_str(&text[i..]);
    out
}

/// RFC 3339 UTC with milliseconds (so the ledger orders runs of one close), the text form of every timestamp in the database.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A constant value added to every row a frame writes (e.g. `run_id`).
#[derive(Clone, Debug)]
pub enum Value {
    Text(String),
    Int(i64),
}

enum Cell<'a> {
    I(Option<i64>),
    F(Option<f64>),
    B(Option<bool>),
    S(Option<String>),
    C(&'a Value),
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
        cols.push(s);
    }
    let names: Vec<String> = cols
        .iter()
        .map(|s| s.name().to_string())
        .chain(extra.iter().map(|(n, _)| n.to_string()))
        .collect();
    let width = names.len();
    let rows_per_stmt = (30_000 / width).max(1);
    let mut written = 0u64;
    let mut start = 0usize;
    // SQLite treats `$N` as a *named* parameter and resolves each name by a linear
    // search while parsing: O(n²) for a 30 000-parameter statement (36 s for 23 000
    // payout lines). Anonymous `?` placeholders bind by position in O(n).
    let positional = conn.backend_name() == "SQLite";
    while start < df.height() {
        let end = (start + rows_per_stmt).min(df.height());
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", names.join(", "));
        let mut n = 0usize;
        for r in 0..(end - start) {
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
        // Not cached: a cached statement keeps the parameter types of its first
        // execution, and a column that was all NULL then (typed by sqlx's guess) would
        // reject real values later ("incorrect binary data format").
        let mut q = sqlx::query(&sql).persistent(false);
        for row in start..end {
            for s in &cols {
                let cell = match s.dtype() {
                    DataType::Int64 => Cell::I(s.i64().map_err(frame_err)?.get(row)),
                    DataType::Float64 => Cell::F(s.f64().map_err(frame_err)?.get(row)),
                    DataType::Boolean => Cell::B(s.bool().map_err(frame_err)?.get(row)),
                    _ => Cell::S(s.str().map_err(frame_err)?.get(row).map(str::to_string)),
                };
                q = bind(q, cell);
            }
            for (_, v) in extra {
                q = bind(q, Cell::C(v));
            }
        }
        let res = q
            .execute(&mut *conn)
            .await
            .map_err(|source| DbError::Write {
                table: format!(
                    "{table} ({})",
                    cols.iter()
                        .map(|s| format!("{}: {}", s.name(), s.dtype()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                source,
            })?;
        written += res.rows_affected();
        start = end;
    }
    Ok(written)
}

fn bind<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    cell: Cell<'_>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    match cell {
        Cell::I(v) => q.bind(v),
        Cell::F(v) => q.bind(v),
        Cell::B(v) => q.bind(v),
        Cell::S(v) => q.bind(v),
        Cell::C(Value::Text(s)) => q.bind(s.clone()),
        Cell::C(Value::Int(i)) => q.bind(*i),
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
        q = bind(q, Cell::C(b));
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

/// One row of the run ledger, as `opnet runs` shows it.
#[derive(Clone, Debug)]
pub struct RunRow {
    pub run_id: String,
    pub job: String,
    pub period: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub status: String,
    pub plan_version: Option<String>,
    pub input_fingerprint: Option<String>,
    pub snapshot: Option<String>,
    pub rows_in: i64,
    pub rows_quarantined: i64,
    pub rows_out: i64,
    pub error: Option<String>,
}

/// What a run declares when it starts.
#[derive(Clone, Debug, Default)]
pub struct RunStart<'a> {
    pub job: &'a str,
    pub period: Option<String>,
    pub plan_version: Option<String>,
    pub input_fingerprint: Option<String>,
    pub snapshot: Option<String>,
    /// The scheduler (lease holder) running it; `None` for manual commands.
    pub lease_holder: Option<String>,
}

/// What a run reports when it ends.
#[derive(Clone, Debug, Default)]
pub struct RunCounts {
    pub rows_in: i64,
    pub rows_quarantined: i64,
    pub rows_out: i64,
}

fn new_run_id(start: &RunStart<'_>) -> String {
    format!(
        "{}-{}-{}",
        start.job,
        start.period.as_deref().unwrap_or("all"),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

impl Db {
    /// Record a `running` run, committed at once so a crash leaves it visible.
    pub async fn start_run(
        &self,
        start: &RunStart<'_>,
        now: DateTime<Utc>,
    ) -> Result<String, DbError> {
        let run_id = new_run_id(start);
        sqlx::query(
            "INSERT INTO job_runs (run_id, job, period, started_at, status, plan_version, input_fingerprint, snapshot, host, lease_holder) \
             VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $8, $9)",
        )
        .bind(&run_id)
        .bind(start.job)
        .bind(start.period.clone())
        .bind(timestamp(now))
        .bind(start.plan_version.clone())
        .bind(start.input_fingerprint.clone())
        .bind(start.snapshot.clone())
        .bind(hostname())
        .bind(start.lease_holder.clone())
        .execute(&self.pool)
        .await
        .map_err(DbError::query("insert job_runs"))?;
        Ok(run_id)
    }

    /// Record a run that was refused before it started (issue 14: e.g. payouts of an
    /// approved period without `--revise`): status `refused`, the reason in `error`,
    /// started and finished `now`. For the due-period logic a refused run counts as
    /// done: what it would have changed is deliberately kept.
    pub async fn refuse_run(
        &self,
        start: &RunStart<'_>,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<String, DbError> {
        let run_id = new_run_id(start);
        sqlx::query(
            "INSERT INTO job_runs (run_id, job, period, started_at, finished_at, status, plan_version, input_fingerprint, \
             snapshot, host, lease_holder, error) VALUES ($1, $2, $3, $4, $4, 'refused', $5, $6, $7, $8, $9, $10)",
        )
        .bind(&run_id)
        .bind(start.job)
        .bind(start.period.clone())
        .bind(timestamp(now))
        .bind(start.plan_version.clone())
        .bind(start.input_fingerprint.clone())
        .bind(start.snapshot.clone())
        .bind(hostname())
        .bind(start.lease_holder.clone())
        .bind(reason)
        .execute(&self.pool)
        .await
        .map_err(DbError::query("insert refused job_runs"))?;
        Ok(run_id)
    }

    /// Mark a run failed. Called after its transaction rolled back, so the failed
    /// record is all that the run leaves behind.
    pub async fn fail_run(
        &self,
        run_id: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE job_runs SET status = 'failed', finished_at = $1, error = $2 WHERE run_id = $3",
        )
        .bind(timestamp(now))
        .bind(error)
        .bind(run_id)
        .execute(&self.pool)
        .await
        .map_err(DbError::query("update job_runs"))?;
        Ok(())
    }

    pub async fn recent_runs(&self, limit: i64) -> Result<Vec<RunRow>, DbError> {
        let rows = sqlx::query(
            "SELECT run_id, job, period, started_at, finished_at, status, plan_version, input_fingerprint, snapshot, \
             rows_in, rows_quarantined, rows_out, error FROM job_runs ORDER BY started_at DESC, run_id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(DbError::query("read job_runs"))?;
        rows.iter()
            .map(|r| {
                Ok(RunRow {
                    run_id: r.try_get(0)?,
                    job: r.try_get(1)?,
                    period: r.try_get(2)?,
                    started_at: r.try_get(3)?,
                    finished_at: r.try_get(4)?,
                    status: r.try_get(5)?,
                    plan_version: r.try_get(6)?,
                    input_fingerprint: r.try_get(7)?,
                    snapshot: r.try_get(8)?,
                    rows_in: r.try_get(9)?,
                    rows_quarantined: r.try_get(10)?,
                    rows_out: r.try_get(11)?,
                    error: r.try_get(12)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::query("decode job_runs"))
    }
}

/// Mark a run succeeded inside its results transaction: both commit or neither.
pub async fn finish_run(
    conn: &mut AnyConnection,
    run_id: &str,
    counts: &RunCounts,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    // Only a `running` row can succeed: a scheduler that took the lease over may
    // have marked this run interrupted, and then its transaction must not commit
    // (the run is being, or has been, redone by the new holder).
    let res = sqlx::query(
        "UPDATE job_runs SET status = 'succeeded', finished_at = $1, rows_in = $2, rows_quarantined = $3, rows_out = $4 \
         WHERE run_id = $5 AND status = 'running'",
    )
    .bind(timestamp(now))
    .bind(counts.rows_in)
    .bind(counts.rows_quarantined)
    .bind(counts.rows_out)
    .bind(run_id)
    .execute(&mut *conn)
    .await
    .map_err(DbError::query("finish job_runs"))?;
    if res.rows_affected() != 1 {
        return Err(DbError::RunNotRunning {
            run_id: run_id.to_string(),
        });
    }
    Ok(())
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
        .map(|(c, t)| col(*c).strict_cast(t.clone()))
        .collect();
    df.lazy().select(casts).collect().map_err(frame_err)
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default()
}

/// Databases of the unit tests (PostgreSQL): one per test, dropped when the guard
/// goes, also when the test fails.
#[cfg(test)]
pub(crate) mod testing {
    /// A PostgreSQL database of one test; dropped (`WITH (FORCE)`) on drop.
    pub struct PgDatabase {
        pub url: String,
        admin: String,
        name: String,
    }

    impl Drop for PgDatabase {
        fn drop(&mut self) {
            let (admin, name) = (self.admin.clone(), self.name.clone());
            // Drop runs inside the test's runtime: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    if let Ok(mut c) =
                        <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await
                    {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut c)
                                .await;
                    }
                });
            })
            .join();
        }
    }

    /// A new empty database `opnet_<tag>_<pid>` on `OPNET_TEST_PG`; `None` (the test
    /// skips) when PostgreSQL is not reachable, unless `OPNET_REQUIRE_SERVICES` is set.
    pub async fn pg_database(tag: &str) -> Option<PgDatabase> {
        let admin = std::env::var("OPNET_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        sqlx::any::install_default_drivers();
        let Ok(mut c) = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await else {
            assert!(
                std::env::var("OPNET_REQUIRE_SERVICES").is_err(),
                "PostgreSQL required"
            );
            eprintln!("SKIPPED: PostgreSQL unavailable");
            return None;
        };
        let name = format!("opnet_{tag}_{}", std::process::id());
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c)
            .await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .await
            .expect("create database");
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin.clone());
        Some(PgDatabase {
            url: format!("{base}/{name}"),
            admin,
            name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_db_errors() {
        let io = || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        let connect = |source| DbError::Connect {
            url: "postgres://h/x".into(),
            source,
        };
        let cases: Vec<(DbError, bool)> = vec![
            (connect(io()), true),
            (connect(sqlx::Error::PoolTimedOut), true),
            (connect(sqlx::Error::PoolClosed), true),
            (DbError::query("select")(io()), true),
            (DbError::query("select")(sqlx::Error::RowNotFound), false),
            (connect(sqlx::Error::Configuration("bad".into())), false),
            (DbError::BadUrl("mysql://x".into()), false),
            (
                DbError::Unsupported {
                    table: "t".into(),
                    column: "c".into(),
                    dtype: "list".into(),
                },
                false,
            ),
        ];
        for (e, transient) in cases {
            assert_eq!(e.is_transient(), transient, "{e}");
        }
    }

    /// Nothing listens on port 1: every attempt fails transiently, `connect` retries
    /// exactly `max_attempts` times and then gives up with the connect error.
    #[tokio::test]
    async fn connect_retries_a_closed_port_then_fails() {
        let (_guard, logs) = retry::capture::start();
        let policy = Backoff {
            initial: Duration::from_millis(20),
            factor: 2.0,
            max_delay: Duration::from_millis(50),
            max_attempts: 3,
            jitter: retry::Jitter::Equal,
        };
        let started = std::time::Instant::now();
        let err = Db::connect_with_policy(
            "postgres://postgres@127.0.0.1:1/x",
            &policy,
            Duration::from_millis(200),
        )
        .await
        .expect_err("nothing listens on port 1");
        let took = started.elapsed();
        assert!(matches!(err, DbError::Connect { .. }), "{err}");
        assert!(err.is_transient(), "{err}");
        assert_eq!(logs.retries(), 2, "{}", logs.text());
        assert!(took < Duration::from_secs(5), "took {took:?}");

        // A bad URL is permanent: no retry at all.
        let (_guard, logs) = retry::capture::start();
        assert!(
            Db::connect_with_policy("mysql://x", &policy, Duration::from_millis(200))
                .await
                .is_err()
        );
        assert_eq!(logs.retries(), 0);
    }

    /// Issue 9 item 12: every credential form is masked, and nothing else changes.
    #[test]
    fn redacts_passwords() {
        let cases = [
            ("postgres://u:secret@h/db", "postgres://u:*****@h/db"),
            (
                "postgresql://u:p%40ss@h:5432/db",
                "postgresql://u:*****@h:5432/db",
            ),
            ("mysql://u:secret@h/x", "mysql://u:*****@h/x"),
            (
                "postgres://u@h/db?password=secret",
                "postgres://u@h/db?password=*****",
            ),
            (
                "postgres://u@h/db?PassWord=secret",
                "postgres://u@h/db?PassWord=*****",
            ),
            (
                "postgres://u@h/db?sslmode=require&sslpassword=secret&application_name=x",
                "postgres://u@h/db?sslmode=require&sslpassword=*****&application_name=x",
            ),
            (
                "postgres://u:one@h/db?password=two&sslkey=/k.pem",
                "postgres://u:*****@h/db?password=*****&sslkey=*****",
            ),
            (
                "postgres://h/db?user=u&password=secret#frag",
                "postgres://h/db?user=u&password=*****#frag",
            ),
            // A password with characters a URL must encode.
            ("postgres://u:se/cret@h/db", "postgres://u:*****@h/db"),
            ("postgres://u:se?cret@h/db", "postgres://u:*****@h/db"),
            ("postgres://u:se#cret@h/db", "postgres://u:*****@h/db"),
            ("postgres://u:se@cret@h/db", "postgres://u:*****@h/db"),
            // libpq keyword/value strings.
            (
                "host=h user=u password=secret dbname=x",
                "host=h user=u password=***** dbname=x",
            ),
            (
                "host=h password='se cret' dbname=x",
                "host=h password=***** dbname=x",
            ),
            // Nothing secret: unchanged.
            ("sqlite://./x.db", "sqlite://./x.db"),
            ("sqlite:x.db?mode=ro", "sqlite:x.db?mode=ro"),
            ("postgres://u@h:5432/db", "postgres://u@h:5432/db"),
            (
                "postgres://h:5432/db?application_name=a@b",
                "postgres://h:5432/db?application_name=a@b",
            ),
            ("postgres://u@h/db?password=", "postgres://u@h/db?password="),
        ];
        for (url, want) in cases {
            assert_eq!(redact(url), want, "{url}");
            for secret in ["secret", "se cret", "cret", "two", "one", "p%40ss"] {
                assert!(!redact(url).contains(secret), "{url}");
            }
        }
    }

    /// The same frame round trip on PostgreSQL (floats, nulls, booleans: the types the
    /// Any driver maps differently per backend).
    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_writes_and_reads_every_column_type() {
        let Some(pg) = testing::pg_database("db").await else {
            return;
        };
        let db = Db::connect(&pg.url).await.unwrap();
        db.migrate().await.unwrap();
        roundtrip(&db).await;
        db.pool.close().await;
    }

    /// Issue 9 item 14: "database is locked" is transient. A real SQLITE_BUSY: one
    /// connection holds the write lock, another (without a busy timeout) asks for it.
    #[tokio::test]
    async fn sqlite_busy_is_transient() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let db = Db::connect(&url).await.unwrap();
        db.migrate().await.unwrap();
        let mut other = <AnyConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        sqlx::query("PRAGMA busy_timeout = 0")
            .execute(&mut other)
            .await
            .unwrap();
        let holder = db.begin_write().await.unwrap();
        let err = sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect_err("the write lock is held");
        assert!(err.to_string().contains("database is locked"), "{err}");
        assert!(is_transient_sqlx(&err), "{err}");
        assert!(DbError::query("begin")(err).is_transient());
        drop(holder);
        // …and a constraint error is not.
        let dup = sqlx::query(
            "INSERT INTO opnet_migrations (version, applied_at) VALUES ('0001_init', 'x')",
        )
        .execute(&db.pool)
        .await
        .expect_err("duplicate version");
        assert!(!is_transient_sqlx(&dup), "{dup}");
    }

    /// Every SQLite connection runs in WAL mode with the busy timeout (set when it
    /// connects: the URL cannot carry them).
    #[tokio::test]
    async fn sqlite_connections_use_wal_and_a_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .unwrap();
        let mut conns = Vec::new();
        for _ in 0..3 {
            let mut c = db.pool.acquire().await.unwrap();
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut *c)
                .await
                .unwrap();
            let timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(&mut *c)
                .await
                .unwrap();
            assert_eq!(mode, "wal");
            assert_eq!(timeout, SQLITE_BUSY_TIMEOUT.as_millis() as i64);
            conns.push(c);
        }
    }

    /// Issue 9 item 14: a fresh SQLite file opened by several processes at once (here
    /// separate pools, i.e. separate SQLite connections) is migrated exactly once;
    /// before, one of them failed with `table job_runs already exists`.
    #[tokio::test(flavor = "multi_thread")]
    async fn sqlite_migration_race_on_a_fresh_file() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/race.db", dir.path().display());
        // A thread and a runtime each, as separate processes would be.
        let start = std::sync::Arc::new(std::sync::Barrier::new(6));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (url, start) = (url.clone(), start.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        let db = Db::connect(&url).await?;
                        start.wait();
                        db.migrate().await
                    })
                })
            })
            .collect();
        let mut applied = Vec::new();
        for t in threads {
            applied.push(
                t.join()
                    .unwrap()
                    .expect("every opener migrates or finds it done"),
            );
        }
        assert_eq!(
            applied.iter().filter(|a| !a.is_empty()).count(),
            1,
            "one opener applied the migrations: {applied:?}"
        );
        let db = Db::connect(&url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM opnet_migrations")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(n as usize, MIGRATIONS.len());
    }

    /// Issue 9 item 14: a read-then-write transaction. With a plain (deferred) BEGIN,
    /// the second writer fails at once when the first committed after its read
    /// (SQLITE_BUSY_SNAPSHOT: no busy timeout helps); `begin_write` (BEGIN IMMEDIATE)
    /// makes it wait instead, and both commit.
    #[tokio::test(flavor = "multi_thread")]
    async fn sqlite_read_then_write_transactions_wait_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        async fn insert(tx: &mut AnyConnection, v: &str) -> Result<(), sqlx::Error> {
            sqlx::query(
                "INSERT INTO job_leases (name, holder, acquired_at, expires_at) VALUES ($1, 'h', 'a', 'b')",
            )
            .bind(v.to_string())
            .execute(tx)
            .await
            .map(|_| ())
        }
        let count = "SELECT COUNT(*) FROM job_leases";

        // Deferred: B reads, A writes and commits, B's write is refused.
        let mut a = db.pool.begin().await.unwrap();
        let mut b = db.pool.begin().await.unwrap();
        let _: i64 = sqlx::query_scalar(count).fetch_one(&mut *b).await.unwrap();
        let _: i64 = sqlx::query_scalar(count).fetch_one(&mut *a).await.unwrap();
        insert(&mut a, "a1").await.unwrap();
        a.commit().await.unwrap();
        let err = insert(&mut b, "b1").await.expect_err("stale snapshot");
        assert!(is_transient_sqlx(&err), "{err}");
        drop(b);

        // IMMEDIATE: B waits for A's commit, then reads what A wrote, then writes.
        let a = db.begin_write().await.unwrap();
        let db2 = db.clone();
        let b = tokio::spawn(async move {
            let mut b = db2.begin_write().await.unwrap();
            let n: i64 = sqlx::query_scalar(count).fetch_one(&mut *b).await?;
            insert(&mut b, "b2").await?;
            b.commit().await?;
            Ok::<i64, sqlx::Error>(n)
        });
        let mut a = a;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _: i64 = sqlx::query_scalar(count).fetch_one(&mut *a).await.unwrap();
        insert(&mut a, "a2").await.unwrap();
        a.commit().await.unwrap();
        let seen_by_b = b.await.unwrap().expect("B waited and committed");
        assert_eq!(seen_by_b, 2, "B read after A's commit");
    }

    /// The data of a database written by the previous version survives migration
    /// 0004 (on SQLite its three tables are rebuilt): rows, statuses, and the
    /// conversions (outbox seconds → milliseconds, the report's missing period).
    async fn migration_0004_keeps_and_converts(url: &str, backend: Backend) {
        let db = Db::connect(url).await.unwrap();
        let mut conn = db.pool.acquire().await.unwrap();
        sqlx::query(
            "CREATE TABLE opnet_migrations (version TEXT PRIMARY KEY, applied_at TEXT NOT NULL)",
        )
        .execute(&mut *conn)
        .await
        .unwrap();
        for (version, pg, lite) in &MIGRATIONS[..3] {
            let script = if backend == Backend::Postgres {
                pg
            } else {
                lite
            };
            apply_migration(&mut conn, version, script).await.unwrap();
        }
        for sql in [
            "INSERT INTO job_runs (run_id, job, period, started_at, finished_at, status) VALUES ('r1', 'payouts', '2025-01', '2025-02-01T06:00:00.000Z', '2025-02-01T06:01:00.000Z', 'succeeded')",
            "INSERT INTO job_runs (run_id, job, period, started_at, status) VALUES ('r2', 'payouts', '2025-02', '2025-03-01T06:00:00.000Z', 'failed')",
            "INSERT INTO payout_statements (period, operator_id, currency, phase, tier, software_cents, implementation_cents, support_cents, \
             operator_share_cents, candlefish_share_cents, clawback_cents, carried_in_cents, payable_cents, carried_out_cents, statement_on, due_on, \
             status, revision, plan_version, run_id) VALUES ('2025-01', 'OP-1', 'USD', 'p', 'none', 1, 2, 3, 4, 5, 0, 0, 4, 0, '2025-02-01', '2025-03-03', 'sent', 1, 'v', 'r1')",
            "INSERT INTO email_outbox (message_id, dedup_key, kind, period, recipient, sender, subject, status, attempts, sent_at, queued_at, body) \
             VALUES ('<a@opnet>', 'network_health:2025-01:l@x:abc', 'network_health', NULL, 'l@x', 's@x', 's', 'sent', 1, '2025-02-01T06:02:00Z', '2025-02-01T06:01:00Z', 'b')",
        ] {
            sqlx::query(sql).execute(&mut *conn).await.unwrap();
        }
        drop(conn);
        // 0004 and every later migration.
        let applied = db.migrate().await.unwrap();
        assert_eq!(
            applied.first().map(String::as_str),
            Some("0004_mail_states")
        );
        let run: (String, Option<String>) =
            sqlx::query_as("SELECT status, published_at FROM job_runs WHERE run_id = 'r1'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(
            run,
            ("succeeded".into(), Some("2025-02-01T06:01:00.000Z".into()))
        );
        let failed: Option<String> =
            sqlx::query_scalar("SELECT published_at FROM job_runs WHERE run_id = 'r2'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(failed, None);
        let st: (String, i64) =
            sqlx::query_as("SELECT status, payable_cents FROM payout_statements")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(st, ("sent".into(), 4));
        let mail: (Option<String>, String, Option<String>) =
            sqlx::query_as("SELECT period, queued_at, sent_at FROM email_outbox")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(
            mail,
            (
                Some("2025-01".into()),
                "2025-02-01T06:01:00.000Z".into(),
                Some("2025-02-01T06:02:00.000Z".into())
            )
        );
        // The new states are accepted, unknown ones still refused.
        sqlx::query("UPDATE email_outbox SET status = 'suppressed'")
            .execute(&db.pool)
            .await
            .unwrap();
        sqlx::query("UPDATE payout_statements SET status = 'queued'")
            .execute(&db.pool)
            .await
            .unwrap();
        sqlx::query("UPDATE job_runs SET status = 'refused' WHERE run_id = 'r2'")
            .execute(&db.pool)
            .await
            .unwrap();
        assert!(
            sqlx::query("UPDATE email_outbox SET status = 'lost'")
                .execute(&db.pool)
                .await
                .is_err()
        );
        db.pool.close().await;
    }

    #[tokio::test]
    async fn sqlite_migration_0004_keeps_and_converts() {
        let dir = tempfile::tempdir().unwrap();
        migration_0004_keeps_and_converts(
            &format!("sqlite://{}/t.db", dir.path().display()),
            Backend::Sqlite,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_migration_0004_keeps_and_converts() {
        let Some(pg) = testing::pg_database("db_m4").await else {
            return;
        };
        migration_0004_keeps_and_converts(&pg.url, Backend::Postgres).await;
    }

    async fn roundtrip(db: &Db) {
        let df = df!(
            "period" => ["2025-01", "2025-01"],
            "metric" => ["a", "b"],
            "dimension" => [None::<&str>, Some("USD")],
            "value" => [Some(0.5f64), None],
            "value_cents" => [None::<i64>, Some(12)],
            "target" => [Some(1.0f64), None],
            "on_target" => [Some(false), None],
        )
        .unwrap();
        let mut conn = db.pool.acquire().await.unwrap();
        insert_frame(
            &mut conn,
            "network_health",
            &df,
            &[("run_id", Value::Text("r".into()))],
        )
        .await
        .unwrap();
        let back = query_frame(
            &mut conn,
            &format!(
                "SELECT metric, value, value_cents, {} FROM network_health ORDER BY metric",
                bool_as_int("on_target")
            ),
            &[],
            &[
                ("metric", DataType::String),
                ("value", DataType::Float64),
                ("value_cents", DataType::Int64),
                ("on_target", DataType::Boolean),
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            back.column("on_target").unwrap().bool().unwrap().get(0),
            Some(false)
        );
        assert_eq!(
            back.column("on_target").unwrap().bool().unwrap().get(1),
            None
        );
        assert_eq!(
            back.column("value").unwrap().f64().unwrap().get(0),
            Some(0.5)
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sqlite_writes_and_reads_every_column_type() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/t.db", dir.path().display()))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        roundtrip(&db).await;
    }

    #[tokio::test]
    async fn sqlite_migrates_twice_and_writes_frames() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let db = Db::connect(&url).await.unwrap();
        assert_eq!(
            db.migrate().await.unwrap(),
            [
                "0001_init",
                "0002_leases",
                "0003_run_holder",
                "0004_mail_states",
                "0006_lead_assignments"
            ]
        );
        assert!(db.migrate().await.unwrap().is_empty(), "idempotent");
        let df = df!(
            "period" => ["2025-01", "2025-01"],
            "operator_id" => ["a", "b"],
            "active_customers" => [3i64, 0],
            "tier" => ["bronze", "none"],
            "previous_tier" => ["none", "none"],
            "change" => ["promotion", "none"],
        )
        .unwrap();
        let mut conn = db.pool.acquire().await.unwrap();
        let n = insert_frame(
            &mut conn,
            "operator_tiers",
            &df,
            &[("run_id", Value::Text("r1".into()))],
        )
        .await
        .unwrap();
        assert_eq!(n, 2);
        let back = query_frame(
            &mut conn,
            "SELECT operator_id, active_customers FROM operator_tiers WHERE period = $1 ORDER BY operator_id",
            &[Value::Text("2025-01".into())],
            &[("operator_id", DataType::String), ("active_customers", DataType::Int64)],
        )
        .await
        .unwrap();
        assert_eq!(back.height(), 2);
        assert_eq!(
            back.column("active_customers")
                .unwrap()
                .i64()
                .unwrap()
                .get(0),
            Some(3)
        );
    }
}
