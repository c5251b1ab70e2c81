//! Issue 14: a test run leaves no PostgreSQL database behind. Every test database
//! comes from `tests/common/pg.rs` ([`pg::TestDb`]); these tests plant the two ways
//! a test ends — it passes while a connection pool is still open, or it fails with
//! a panic — and check that the database is gone afterwards.

#![allow(clippy::unwrap_used)]

#[path = "common/pg.rs"]
mod pg;

fn required() -> bool {
    std::env::var("OPNET_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// `None` (the test is skipped) when PostgreSQL is absent and not required.
async fn create(tag: &str) -> Option<pg::TestDb> {
    match pg::TestDb::create(tag).await {
        Ok(db) => Some(db),
        Err(e) if required() => panic!("{e} is required (OPNET_REQUIRE_SERVICES=1)"),
        Err(e) => {
            eprintln!("SKIPPED: {e} unavailable");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passing_test_drops_its_database_even_with_a_pool_still_open() {
    let Some(db) = create("guard_pass").await else {
        return;
    };
    let name = db.name.clone();
    assert!(pg::database_exists(&name).await.unwrap());
    // A pool the test forgot to close: DROP DATABASE alone would refuse.
    let pool = sqlx::AnyPool::connect(&db).await.unwrap();
    sqlx::query("CREATE TABLE t (x bigint)")
        .execute(&pool)
        .await
        .unwrap();
    drop(db);
    assert!(
        !pg::database_exists(&name).await.unwrap(),
        "{name} left behind"
    );
    drop(pool);
}

#[test]
fn a_failing_test_drops_its_database_too() {
    let name = format!("opnet_guard_fail_{}", std::process::id());
    // The "test": creates its database, then fails an assertion.
    let failed = std::thread::spawn(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let Some(_db) = create("guard_fail").await else {
                return;
            };
            panic!("planted failure");
        })
    })
    .join();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let exists = rt.block_on(pg::database_exists(&name));
    match exists {
        Ok(exists) => {
            assert!(failed.is_err(), "the planted failure must fail the test");
            assert!(!exists, "{name} left behind by a failed test");
        }
        Err(e) if !required() => eprintln!("SKIPPED: PostgreSQL unavailable ({e})"),
        Err(e) => panic!("PostgreSQL required: {e}"),
    }
}
