//! SQL sources: what their errors and labels show.

use super::*;

/// Issue 9 item 12: a SQL source's connection error and label never show its
/// password, whichever form it takes.
#[tokio::test]
async fn sql_source_errors_mask_credentials() {
    for url in [
        "postgres://u:S3cretA@127.0.0.1:1/db",
        "postgres://u@127.0.0.1:1/db?password=S3cretA",
        "postgres://u@127.0.0.1:1/db?sslmode=disable&sslpassword=S3cretA",
    ] {
        let src = SqlSource {
            url: url.into(),
            query: "SELECT 1".into(),
        };
        let mut conns = BTreeMap::new();
        let err = read_sql(&contract::OPERATORS, &src, &mut conns)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("SQL source sql:postgres://u"), "{err}");
        assert!(err.contains("*****"), "{err}");
        assert!(!err.contains("S3cretA"), "{err}");
    }
}
