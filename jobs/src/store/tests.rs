//! Tests of the local-directory store: put/get/list/exists, not-found errors naming the
//! location, keys and symlinks that would escape the root, store URLs, transient errors.

use super::*;

#[tokio::test]
async fn put_get_list_exists() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let s = LocalDir::new(tmp.path());
    s.put("a/b/c.txt", b"hello".to_vec()).await?;
    s.put("a/b/d.txt", b"x".to_vec()).await?;
    s.put("a/bb.txt", b"y".to_vec()).await?;
    s.put("z.txt", b"z".to_vec()).await?;
    assert_eq!(s.get("a/b/c.txt").await?, b"hello");
    // overwrite
    s.put("a/b/c.txt", b"bye".to_vec()).await?;
    assert_eq!(s.get("a/b/c.txt").await?, b"bye");
    assert_eq!(s.list("a/b/").await?, vec!["a/b/c.txt", "a/b/d.txt"]);
    assert_eq!(
        s.list("a/b").await?,
        vec!["a/b/c.txt", "a/b/d.txt", "a/bb.txt"]
    );
    assert_eq!(s.list("").await?.len(), 4);
    assert!(s.list("nope/").await?.is_empty());
    assert!(s.exists("z.txt").await?);
    assert!(!s.exists("a/b").await?, "a directory is not an object");
    assert!(!s.exists("missing").await?);
    // no temp files left behind
    let names: Vec<_> = std::fs::read_dir(tmp.path().join("a/b"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 2);
    Ok(())
}

#[tokio::test]
async fn not_found_names_location() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let s = LocalDir::new(tmp.path());
    let err = s
        .get("x/y.csv")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("not found"), "{err}");
    assert!(
        err.contains(&tmp.path().join("x/y.csv").display().to_string()),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn keys_cannot_escape_root() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let s = LocalDir::new(tmp.path());
    assert!(matches!(
        s.put("../x", vec![]).await,
        Err(StoreError::InvalidKey { .. })
    ));
    assert!(matches!(
        s.get("/etc/passwd").await,
        Err(StoreError::InvalidKey { .. })
    ));
    Ok(())
}

/// Issue 9 item 15: a link below the root (to a file or a folder outside it) is
/// refused, naming its path; so is a FIFO in place of a file.
#[cfg(unix)]
#[tokio::test]
async fn symlinks_and_special_files_are_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let outside = tempfile::tempdir()?;
    std::fs::write(outside.path().join("secret.csv"), "operator_id\nx\n")?;
    let root = tmp.path().join("source");
    std::fs::create_dir_all(root.join("crm"))?;
    std::os::unix::fs::symlink(
        outside.path().join("secret.csv"),
        root.join("crm/operators.csv"),
    )?;
    std::os::unix::fs::symlink(outside.path(), root.join("billing"))?;
    let s = LocalDir::new(&root);
    for (key, link) in [
        ("crm/operators.csv", "crm/operators.csv"),
        ("billing/secret.csv", "billing"),
    ] {
        let err = s
            .get(key)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            format!(
                "refusing {}: it is a symbolic link; only regular files and directories inside the store's root are read or written",
                root.join(link).display()
            ),
            "{key}"
        );
        assert!(s.local_path(key).is_none(), "{key}");
    }
    assert!(matches!(
        s.put("billing/x.csv", b"x".to_vec()).await,
        Err(StoreError::Refused { .. })
    ));
    assert!(
        !outside.path().join("x.csv").exists(),
        "nothing written through the link"
    );
    assert!(s.list("billing/").await.is_err());
    // The root itself may be a link (configuration).
    let linked_root = tmp.path().join("root-link");
    std::os::unix::fs::symlink(&root, &linked_root)?;
    std::fs::write(root.join("crm/ok.csv"), "a\n")?;
    assert_eq!(LocalDir::new(&linked_root).get("crm/ok.csv").await?, b"a\n");
    // A FIFO would block a read forever.
    let fifo = root.join("crm/leads.csv");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
    assert!(made.success());
    let err = s
        .get("crm/leads.csv")
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        err,
        format!("refusing {}: not a regular file", fifo.display())
    );
    Ok(())
}

#[tokio::test]
async fn open_urls() {
    let none = S3Config::default();
    assert!(open("file:/tmp/lake", &none).await.is_ok());
    assert!(open("/tmp/lake", &none).await.is_ok());
    assert_eq!(
        open("file:///tmp/lake", &none)
            .await
            .map(|s| s.location("k"))
            .ok(),
        Some("/tmp/lake/k".to_string())
    );
    // An explicit region: without one the SDK would ask the instance metadata
    // service. No request is sent: a client is only built.
    let s3 = S3Config {
        region: Some("eu-west-1".into()),
        ..Default::default()
    };
    assert_eq!(
        open("s3://bucket/lake", &s3)
            .await
            .map(|s| s.location("raw/k"))
            .ok(),
        Some("s3://bucket/lake/raw/k".to_string())
    );
    let err = open("s3://B/lake", &s3)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("s3://B/lake") && err.contains("bucket name"),
        "{err}"
    );
    assert!(matches!(
        open("gs://b/x", &none).await,
        Err(StoreError::Unsupported(_))
    ));
}

#[test]
fn transient_store_errors() {
    let cases = [
        (
            StoreError::Io {
                location: "/lake/k".into(),
                source: std::io::Error::from(std::io::ErrorKind::TimedOut),
            },
            true,
        ),
        (
            StoreError::NotFound {
                location: "/lake/k".into(),
            },
            false,
        ),
        (
            StoreError::InvalidKey {
                key: "../x".into(),
                reason: "`..` is not allowed",
            },
            false,
        ),
        (StoreError::Unsupported("gs".into()), false),
        (
            StoreError::Refused {
                location: "/src/crm/operators.csv".into(),
                reason: "not a regular file",
            },
            false,
        ),
        (
            StoreError::Open {
                url: "s3://".into(),
                reason: "no bucket".into(),
            },
            false,
        ),
        (
            StoreError::Remote {
                location: "s3://b/k".into(),
                reason: "HTTP 503 SlowDown".into(),
                transient: true,
            },
            true,
        ),
        (
            StoreError::Remote {
                location: "s3://b/k".into(),
                reason: "HTTP 403 AccessDenied".into(),
                transient: false,
            },
            false,
        ),
    ];
    for (e, transient) in cases {
        assert_eq!(e.is_transient(), transient, "{e}");
    }
}
