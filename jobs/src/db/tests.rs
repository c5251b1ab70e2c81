//! Tests of the database layer: transient errors and connect retries, URL redaction,
//! SQLite's WAL, busy timeout and write locks, migrations (once, under a race, and
//! 0004's conversions) and the frame round trip on both backends.

use super::migrate::apply_migration;
use super::*;
use polars::df;
use polars::prelude::DataType;
use sqlx::AnyConnection;

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

/// `n` rows of `network_health` for `period` whose values vary in every way a write
/// must keep exactly: text with quotes, backslashes, control characters and
/// non-ASCII, the extreme integers, floats that are not short decimals, NULLs in
/// every nullable column; `metric` is unique per row.
fn varied_network_health(n: usize, period: &str) -> polars::prelude::DataFrame {
    let texts = [
        "quote \" and \\ back",
        "tab\tline\nbreak\u{1}",
        "Zürich — 東京",
        "",
    ];
    let metric: Vec<String> = (0..n).map(|i| format!("m{i:06}")).collect();
    let dimension: Vec<Option<String>> = (0..n)
        .map(|i| (i % 5 != 4).then(|| texts[i % 4].to_string()))
        .collect();
    let floats = [0.1f64, 1e-300, 123_456_789.123_456_79, -0.0, f64::MAX];
    let value: Vec<Option<f64>> = (0..n)
        .map(|i| (i % 7 != 6).then(|| floats[i % 5] * (i as f64 + 1.0).recip()))
        .collect();
    let ints = [i64::MAX, i64::MIN, 0, -1, 1_000_000_000_000_007];
    let value_cents: Vec<Option<i64>> = (0..n).map(|i| (i % 3 != 2).then(|| ints[i % 5])).collect();
    let on_target: Vec<Option<bool>> = (0..n)
        .map(|i| [Some(true), Some(false), None][i % 3])
        .collect();
    polars::prelude::DataFrame::new(
        n,
        vec![
            polars::prelude::Column::new("period".into(), vec![period; n]),
            polars::prelude::Column::new("metric".into(), metric),
            polars::prelude::Column::new("dimension".into(), dimension),
            polars::prelude::Column::new("value".into(), value),
            polars::prelude::Column::new("value_cents".into(), value_cents),
            polars::prelude::Column::new("on_target".into(), on_target),
        ],
    )
    .unwrap()
}

/// The rows of `table` with the columns (names and types) of `like`, as
/// [`query_frame`] reads them: `SELECT … FROM table {rest}`.
async fn read_back(
    conn: &mut AnyConnection,
    table: &str,
    like: &polars::prelude::DataFrame,
    rest: &str,
    binds: &[Value],
) -> polars::prelude::DataFrame {
    let columns: Vec<(&str, DataType)> = like
        .columns()
        .iter()
        .map(|c| (c.name().as_str(), c.dtype().clone()))
        .collect();
    let select: Vec<String> = columns
        .iter()
        .map(|(c, t)| match t {
            DataType::Boolean => bool_as_int(c),
            _ => c.to_string(),
        })
        .collect();
    let sql = format!("SELECT {} FROM {table} {rest}", select.join(", "));
    query_frame(conn, &sql, binds, &columns).await.unwrap()
}

/// Issue 13: PostgreSQL writes frames as one JSON parameter per 20,000 rows: every
/// value comes back exactly (text with quotes, backslashes, control characters and
/// non-ASCII; the extreme integers; floats that are not short decimals), across the
/// chunk boundary; a frame with NaN takes the `VALUES` path and keeps it.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_json_rows_are_exact_across_chunks() {
    let Some(pg) = testing::pg_database("dbjson").await else {
        return;
    };
    let db = Db::connect(&pg.url).await.unwrap();
    db.migrate().await.unwrap();
    let n = 45_001usize;
    let df = varied_network_health(n, "2025-01");
    let mut conn = db.pool.acquire().await.unwrap();
    let written = insert_frame(
        &mut conn,
        "network_health",
        &df,
        &[("run_id", Value::Text("r\"1".into()))],
    )
    .await
    .unwrap();
    assert_eq!(written as usize, n);
    let back = read_back(&mut conn, "network_health", &df, "ORDER BY metric", &[]).await;
    assert!(back.equals_missing(&df), "{back:?}\n{df:?}");
    let run_ids: Vec<String> = sqlx::query_scalar("SELECT DISTINCT run_id FROM network_health")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(run_ids, ["r\"1"]);

    let nan = df!(
        "period" => ["2025-02"],
        "metric" => ["nan"],
        "value" => [f64::NAN],
    )
    .unwrap();
    insert_frame(
        &mut conn,
        "network_health",
        &nan,
        &[("run_id", Value::Text("r".into()))],
    )
    .await
    .unwrap();
    let v: f64 = sqlx::query_scalar("SELECT value FROM network_health WHERE metric = 'nan'")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert!(v.is_nan());
    drop(conn);
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
    let dup =
        sqlx::query("INSERT INTO opnet_migrations (version, applied_at) VALUES ('0001_init', 'x')")
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
    let later: Vec<&str> = super::migrate::MIGRATIONS[3..]
        .iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(later[0], "0004_mail_states");
    assert_eq!(db.migrate().await.unwrap(), later);
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
    let st: (String, i64) = sqlx::query_as("SELECT status, payable_cents FROM payout_statements")
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
    let all: Vec<&str> = super::migrate::MIGRATIONS.iter().map(|m| m.0).collect();
    assert_eq!(
        &all[..6],
        [
            "0001_init",
            "0002_leases",
            "0003_run_holder",
            "0004_mail_states",
            "0005_scorecards_equity",
            "0006_lead_assignments"
        ]
    );
    assert_eq!(db.migrate().await.unwrap(), all);
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

/// Issue 13: SQLite writes frames in cached statements of 256 rows then powers of
/// two, with the columns that hold one value on every row bound once per statement.
/// Every value comes back exactly and in order, whatever the height (chunk
/// boundaries, a tail of several shapes, one row) and whichever columns are constant
/// (a constant text, an all-NULL column, a constant bool; one varying column; every
/// column constant).
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_rows_are_exact_across_chunks_and_constant_columns() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("sqlite://{}/t.db", dir.path().display()))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    // 968 = 3 × 256 + 128 + 64 + 8; 255 = 128 + 64 + … + 1; 1 row.
    for (p, n) in [(1, 968usize), (2, 255), (3, 1), (4, 2)] {
        let period = format!("2025-{p:02}");
        let df = if n == 2 {
            // Two rows alike but for the key (the table's unique index): only the
            // dimension's NULL-or-text varies.
            df!(
                "period" => [period.as_str(); 2],
                "metric" => ["same"; 2],
                "dimension" => [None, Some("x")],
                "target" => [None::<f64>; 2],
                "on_target" => [Some(true); 2],
            )
            .unwrap()
        } else {
            // A constant bool and an all-NULL column beside the varied ones.
            let mut df = varied_network_health(n, &period);
            df.with_column(polars::prelude::Column::new(
                "on_target".into(),
                vec![Some(true); n],
            ))
            .unwrap();
            df.with_column(polars::prelude::Column::new(
                "target".into(),
                vec![None::<f64>; n],
            ))
            .unwrap();
            df
        };
        let written = insert_frame(
            &mut conn,
            "network_health",
            &df,
            &[("run_id", Value::Text("r'1".into()))],
        )
        .await
        .unwrap();
        assert_eq!(written as usize, df.height(), "{period}");
        let back = read_back(
            &mut conn,
            "network_health",
            &df,
            "WHERE period = $1 ORDER BY rowid",
            &[Value::Text(period.clone())],
        )
        .await;
        assert!(back.equals_missing(&df), "{period}: {back:?}\n{df:?}");
    }
    let run_ids: Vec<String> = sqlx::query_scalar("SELECT DISTINCT run_id FROM network_health")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(run_ids, ["r'1"]);

    // Every column constant (a table without a unique key): written as plain rows.
    let same = df!(
        "period" => ["2025-05"; 300],
        "kind" => ["duplicate_line"; 300],
        "invoice_id" => ["inv-1"; 300],
        "line_no" => [Some(2i64); 300],
        "refund_id" => [None::<&str>; 300],
        "detail" => ["twice"; 300],
    )
    .unwrap();
    let written = insert_frame(
        &mut conn,
        "reconciliation_exceptions",
        &same,
        &[("run_id", Value::Text("r2".into()))],
    )
    .await
    .unwrap();
    assert_eq!(written, 300);
    let back = read_back(
        &mut conn,
        "reconciliation_exceptions",
        &same,
        "ORDER BY rowid",
        &[],
    )
    .await;
    assert!(back.equals_missing(&same), "{back:?}");
}
