//! The results database: PostgreSQL in production, SQLite as the embedded default,
//! both through sqlx's `Any` driver so every query is written once.
//!
//! This module connects (and says which errors are worth a retry); its rooms hold the
//! schema migrations (`migrate`: `sql/<backend>/*.sql`, embedded in the binary), the
//! run ledger (`ledger`: `job_runs`), a bulk writer and reader between Polars
//! `DataFrame`s and tables (`frame`), so a job's results go in with few round trips
//! inside the same transaction as its ledger row, and the masking of credentials in
//! database URLs (`redact`). Everything is re-exported here: callers name `crate::db::X`.
//!
//! SQLite is made safe for several processes on one file (issue 9, item 14): every
//! connection runs in WAL mode with a busy timeout (set when it connects: the URL
//! cannot carry either), writers open their transactions with `BEGIN IMMEDIATE`
//! ([`Db::begin_write`]) so a read-then-write transaction never fails on a lock
//! upgrade, migrations run under the write lock, and "database is locked" counts as
//! transient ([`is_transient_sqlx`]), never as a failed run.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool};
use std::str::FromStr;
use std::time::Duration;

use crate::retry::{self, Backoff};

mod frame;
mod ledger;
mod migrate;
mod redact;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

pub use frame::{
    TableSpec, Value, bool_as_int, insert_frame, period_frame, push_value_rows, query_frame,
    written_frame,
};
pub(crate) use ledger::hostname;
pub use ledger::{RunCounts, RunRow, RunStart, finish_run};
pub use migrate::MIGRATIONS;
pub use redact::redact;

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
    Frame {
        table: String,
        source: polars::prelude::PolarsError,
    },
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

/// RFC 3339 UTC with milliseconds (so the ledger orders runs of one close), the text form of every timestamp in the database.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
