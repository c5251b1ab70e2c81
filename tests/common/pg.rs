//! PostgreSQL databases for tests that are dropped when the test ends — passed or
//! failed: [`TestDb`] drops its database in `Drop`, which also runs while a failed
//! assertion unwinds. A killed test process (SIGKILL) is the only way to leave one.
//!
//! Only std, tokio and sqlx, so that the unit tests of `opnet` use it too, as
//! `crate::test_pg` (jobs/src/lib.rs includes this file under `cfg(test)`):
//! `let db = crate::test_pg::TestDb::create("db").await?;` then `db.url`, and keep
//! `db` alive until the test ends.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::fmt;
use std::ops::Deref;

/// The administrative connection tests use to create their databases
/// (`OPNET_TEST_PG`, default the local `postgres` database, trust auth).
pub fn admin_url() -> String {
    std::env::var("OPNET_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh PostgreSQL database named `opnet_<tag>_<pid>`, dropped (with any
/// connection still open to it) when this value is dropped.
pub struct TestDb {
    /// Connection URL of the new database.
    pub url: String,
    /// The database's name.
    pub name: String,
    admin: String,
}

impl TestDb {
    /// Creates the database (dropping a leftover of the same name first). `Err` says
    /// why PostgreSQL could not be reached; the caller decides whether that skips or
    /// fails the test. A database PostgreSQL refuses to create panics.
    pub async fn create(tag: &str) -> Result<TestDb, String> {
        let admin = admin_url();
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
            .await
            .map_err(|e| format!("PostgreSQL at {admin} ({e})"))?;
        let name = format!("opnet_{tag}_{}", std::process::id());
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
        // PostgreSQL answered, so a failure here is a fault, not a missing service.
        if let Err(e) = sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
        {
            panic!("creating database {name} at {admin}: {e}");
        }
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin.clone());
        Ok(TestDb {
            url: format!("{base}/{name}"),
            name,
            admin,
        })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        drop_database(&self.admin, &self.name);
    }
}

/// Drops database `name` through `admin`, closing connections still open to it
/// (a pool the test did not close). Blocks until done; never panics, since it runs
/// in `Drop`, possibly while a failed test unwinds (a panic there would abort).
///
/// It runs on a thread of its own with its own runtime: `Drop` cannot await, and
/// blocking on the test's runtime from inside it would deadlock.
pub fn drop_database(admin: &str, name: &str) {
    let (admin, db) = (admin.to_string(), name.to_string());
    let done = std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return Err(format!("runtime: {e}")),
        };
        rt.block_on(async {
            sqlx::any::install_default_drivers();
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    })
    .join();
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("warning: test database {name} not dropped: {e}"),
        Err(_) => eprintln!("warning: test database {name} not dropped: the drop panicked"),
    }
}

/// Whether a database of that name exists (for tests of this module's promise).
pub async fn database_exists(name: &str) -> Result<bool, String> {
    let admin = admin_url();
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
        .await
        .map_err(|e| e.to_string())?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(n > 0)
}

/// The URL, so a `TestDb` goes wherever a `&str` URL does.
impl Deref for TestDb {
    type Target = str;
    fn deref(&self) -> &str {
        &self.url
    }
}

impl AsRef<str> for TestDb {
    fn as_ref(&self) -> &str {
        &self.url
    }
}

impl AsRef<OsStr> for TestDb {
    fn as_ref(&self) -> &OsStr {
        OsStr::new(&self.url)
    }
}

impl fmt::Display for TestDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}
