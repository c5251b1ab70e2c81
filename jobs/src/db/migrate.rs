//! The schema migrations: every `sql/<backend>/NNNN_name.sql`, embedded at build time
//! (`jobs/build.rs`), applied once each and recorded in `opnet_migrations`, under a
//! lock so replicas or processes starting at once apply them once.

use chrono::Utc;
use sqlx::AnyConnection;

use super::{Backend, Db, DbError, timestamp};

// The embedded migrations, discovered from `sql/` at build time (`jobs/build.rs`):
// `MIGRATIONS: &[(version, PostgreSQL script, SQLite script)]`, in version order.
include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

impl Db {
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

pub(super) async fn apply_migration(
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
