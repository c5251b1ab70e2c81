//! Databases of the unit tests (PostgreSQL): one per test, dropped when the guard
//! goes, also when the test fails.

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
                if let Ok(mut c) = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await
                {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
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
